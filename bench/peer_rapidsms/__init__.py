"""A minimal RapidSMS 2.2 project, bench/soak.py's peer: generic HTTP backend, message log, default reply."""
