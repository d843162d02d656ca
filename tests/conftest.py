"""The real servers of tests/services, declared here once for every test module.

A fixture imported into a test module is that module's own: each module then started its
own PostgreSQL cluster (initdb and start) and kept it until the session ended. Declared
here, the session has one cluster and one broker of each kind, as their docstrings say.
"""

from tests.services.mosquitto import mosquitto, mosquitto_auth
from tests.services.postgres import pg_dsn, postgres_server

__all__ = ["mosquitto", "mosquitto_auth", "pg_dsn", "postgres_server"]
