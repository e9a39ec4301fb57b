"""One route: the generic HTTP backend, reading the sender and the text from Twilio's field names."""

from django.urls import path
from rapidsms.backends.http.views import GenericHttpBackendView

urlpatterns = [
    path(
        "backend/http/",
        GenericHttpBackendView.as_view(
            backend_name="http", params={"identity_name": "From", "text_name": "Body"}
        ),
        name="http-backend",
    ),
]
