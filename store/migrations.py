"""Schema versions: ordered migrations per backend, applied at start-up.

Each migration is ``(version, statements)``; versions are integers, applied in increasing
order, each in its own transaction together with the ``schema_version`` update. Never edit a
released migration: append a new one.

TimescaleDB set-up is not a numbered migration: it depends on the extension being present on
the server, so :mod:`store.postgres` applies the idempotent statements below at every start.
"""

from __future__ import annotations

Migration = tuple[int, tuple[str, ...]]

SQLITE: tuple[Migration, ...] = (
    (1, (
        """CREATE TABLE positions (
            time REAL NOT NULL, mmsi INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
            speed REAL, course REAL, heading INTEGER, status INTEGER,
            msg_type INTEGER NOT NULL, sources TEXT NOT NULL, drill INTEGER NOT NULL DEFAULT 0)""",
        # The idempotent key: a catch-up after an outage never duplicates a report.
        "CREATE UNIQUE INDEX positions_key ON positions (mmsi, time, msg_type, drill)",
        "CREATE INDEX positions_time ON positions (time)",
        """CREATE TABLE vessels (
            mmsi INTEGER PRIMARY KEY, shipname TEXT, callsign TEXT, imo INTEGER,
            shiptype INTEGER, to_bow INTEGER, to_stern INTEGER, to_port INTEGER,
            to_starboard INTEGER, draught REAL, destination TEXT, updated_at REAL NOT NULL)""",
        """CREATE TABLE vessel_history (
            mmsi INTEGER NOT NULL, time REAL NOT NULL, changes TEXT NOT NULL,
            PRIMARY KEY (mmsi, time))""",
        """CREATE TABLE alerts (
            id TEXT PRIMARY KEY, rule TEXT NOT NULL, risk_area TEXT NOT NULL,
            severity TEXT NOT NULL, state TEXT NOT NULL, mmsi INTEGER, other_mmsi INTEGER,
            shipname TEXT, zone TEXT, lat REAL, lon REAL, started_at REAL NOT NULL,
            ended_at REAL, drill INTEGER NOT NULL, details TEXT NOT NULL,
            updated_at REAL NOT NULL, acked_at REAL, acked_by TEXT, ack_note TEXT,
            resolved_at REAL, resolved_by TEXT, resolve_note TEXT)""",
        "CREATE INDEX alerts_started ON alerts (started_at)",
        "CREATE INDEX alerts_rule ON alerts (rule, started_at)",
        "CREATE INDEX alerts_mmsi ON alerts (mmsi)",
        "CREATE INDEX alerts_state ON alerts (state)",
        """CREATE TABLE alert_audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT, time REAL NOT NULL,
            actor TEXT NOT NULL, action TEXT NOT NULL, note TEXT, before_state TEXT,
            after_state TEXT, dedup TEXT UNIQUE)""",
        "CREATE INDEX alert_audit_alert ON alert_audit (alert_id, id)",
        """CREATE TABLE snoozes (
            rule TEXT NOT NULL, mmsi INTEGER NOT NULL, until REAL NOT NULL,
            actor TEXT NOT NULL, note TEXT, created REAL NOT NULL, PRIMARY KEY (rule, mmsi))""",
        """CREATE TABLE zones (
            version INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
            actor TEXT NOT NULL, geojson TEXT NOT NULL)""",
        """CREATE TABLE source_health (
            time REAL NOT NULL, source TEXT NOT NULL, data TEXT NOT NULL,
            PRIMARY KEY (source, time))""",
        "CREATE INDEX source_health_time ON source_health (time)",
        """CREATE TABLE vessel_state (
            mmsi INTEGER PRIMARY KEY, time REAL NOT NULL, state TEXT NOT NULL)""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
            qos INTEGER NOT NULL, retain INTEGER NOT NULL, created REAL NOT NULL)""",
    )),
    # The rules' state that belongs to no vessel (receivers' continuity, pairs not yet
    # alerted), one row per part: without it a restart forgot receivers' breaks. Saved state
    # gets a scope ("live", "replay"): a replay into the live database, or resumed with
    # --start, no longer reads or overwrites the live service's.
    (2, (
        """CREATE TABLE engine_state (
            scope TEXT NOT NULL, part TEXT NOT NULL, time REAL NOT NULL, state TEXT NOT NULL,
            PRIMARY KEY (scope, part))""",
        """CREATE TABLE vessel_state_scoped (
            scope TEXT NOT NULL, mmsi INTEGER NOT NULL, time REAL NOT NULL,
            state TEXT NOT NULL, PRIMARY KEY (scope, mmsi))""",
        "INSERT INTO vessel_state_scoped SELECT 'live', mmsi, time, state FROM vessel_state",
        "DROP TABLE vessel_state",
        "ALTER TABLE vessel_state_scoped RENAME TO vessel_state",
    )),
    # A fix the rules rejected (position jump, MMSI conflict) is kept, marked: tracks and
    # the picture at a past moment leave it out unless asked (a spoof moved them 300 km).
    (3, ("ALTER TABLE positions ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0",)),
    # The MQTT outbox gets a scope ("live", "replay", "drill"): every process on one database
    # drained the one table, so a drill into the live database sent the live service's
    # alerts to the training broker, and the live service sent the drill's.
    (4, ("ALTER TABLE outbox ADD COLUMN scope TEXT NOT NULL DEFAULT 'live'",
         "CREATE INDEX outbox_scope ON outbox (scope, id)")),
    # With each zone version saved over the API, the SHA-256 of the zones file's bytes then:
    # at start-up the file wins only when its content changed since. By the file's mtime, a
    # touch, a config tool writing the same file or a restore from backup dropped the duty
    # officer's zones. NULL: saved before (or with no zones file to read).
    (5, ("ALTER TABLE zones ADD COLUMN file_sha256 TEXT",)),
    # Each audit row's message time: the rules' transitions are dated on it already (the
    # same value), an operator's act on the wall clock, which in a replayed drill is years
    # from the log: with the rules' clock when the act was taken, a debrief reads how long
    # the trainees took. NULL: an act stored before, or made where no rules ran.
    (6, ("ALTER TABLE alert_audit ADD COLUMN message_time REAL",
         "UPDATE alert_audit SET message_time = time WHERE actor = 'rules'")),
    # A new drill exercise marks the drill alerts an earlier one left (the store keeps one
    # row per alert id, the last run's): they were listed under drill=true, in the earlier
    # exercise's states, until the new one raised them again. Cleared when it does.
    (7, ("ALTER TABLE alerts ADD COLUMN earlier_exercise INTEGER NOT NULL DEFAULT 0",)),
)

POSTGRES: tuple[Migration, ...] = (
    (1, (
        """CREATE TABLE positions (
            time timestamptz NOT NULL, mmsi integer NOT NULL,
            lat double precision NOT NULL, lon double precision NOT NULL,
            speed double precision, course double precision, heading smallint,
            status smallint, msg_type smallint NOT NULL, sources text[] NOT NULL,
            drill boolean NOT NULL DEFAULT false)""",
        # Includes the time column, as a hypertable's unique indexes must.
        "CREATE UNIQUE INDEX positions_key ON positions (mmsi, time, msg_type, drill)",
        "CREATE INDEX positions_time ON positions (time DESC)",
        """CREATE TABLE vessels (
            mmsi integer PRIMARY KEY, shipname text, callsign text, imo integer,
            shiptype integer, to_bow integer, to_stern integer, to_port integer,
            to_starboard integer, draught double precision, destination text,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE vessel_history (
            mmsi integer NOT NULL, time timestamptz NOT NULL, changes jsonb NOT NULL,
            PRIMARY KEY (mmsi, time))""",
        """CREATE TABLE alerts (
            id text PRIMARY KEY, rule text NOT NULL, risk_area text NOT NULL,
            severity text NOT NULL, state text NOT NULL, mmsi integer, other_mmsi integer,
            shipname text, zone text, lat double precision, lon double precision,
            started_at timestamptz NOT NULL, ended_at timestamptz, drill boolean NOT NULL,
            details jsonb NOT NULL, updated_at timestamptz NOT NULL, acked_at timestamptz,
            acked_by text, ack_note text, resolved_at timestamptz, resolved_by text,
            resolve_note text)""",
        "CREATE INDEX alerts_started ON alerts (started_at)",
        "CREATE INDEX alerts_rule ON alerts (rule, started_at)",
        "CREATE INDEX alerts_mmsi ON alerts (mmsi)",
        "CREATE INDEX alerts_state ON alerts (state)",
        """CREATE TABLE alert_audit (
            id bigserial PRIMARY KEY, alert_id text, time timestamptz NOT NULL,
            actor text NOT NULL, action text NOT NULL, note text, before_state text,
            after_state text, dedup text UNIQUE)""",
        "CREATE INDEX alert_audit_alert ON alert_audit (alert_id, id)",
        """CREATE TABLE snoozes (
            rule text NOT NULL, mmsi integer NOT NULL, until timestamptz NOT NULL,
            actor text NOT NULL, note text, created timestamptz NOT NULL,
            PRIMARY KEY (rule, mmsi))""",
        """CREATE TABLE zones (
            version serial PRIMARY KEY, time timestamptz NOT NULL, actor text NOT NULL,
            geojson text NOT NULL)""",
        """CREATE TABLE source_health (
            time timestamptz NOT NULL, source text NOT NULL, data jsonb NOT NULL,
            PRIMARY KEY (source, time))""",
        "CREATE INDEX source_health_time ON source_health (time)",
        """CREATE TABLE vessel_state (
            mmsi integer PRIMARY KEY, time timestamptz NOT NULL, state jsonb NOT NULL)""",
        """CREATE TABLE outbox (
            id bigserial PRIMARY KEY, topic text NOT NULL, payload bytea NOT NULL,
            qos smallint NOT NULL, retain boolean NOT NULL, created timestamptz NOT NULL)""",
    )),
    (2, (
        """CREATE TABLE engine_state (
            scope text NOT NULL, part text NOT NULL, time timestamptz NOT NULL,
            state jsonb NOT NULL, PRIMARY KEY (scope, part))""",
        """CREATE TABLE vessel_state_scoped (
            scope text NOT NULL, mmsi integer NOT NULL, time timestamptz NOT NULL,
            state jsonb NOT NULL, PRIMARY KEY (scope, mmsi))""",
        "INSERT INTO vessel_state_scoped SELECT 'live', mmsi, time, state FROM vessel_state",
        "DROP TABLE vessel_state",
        "ALTER TABLE vessel_state_scoped RENAME TO vessel_state",
    )),
    (3, ("ALTER TABLE positions ADD COLUMN suspect boolean NOT NULL DEFAULT false",)),
    (4, ("ALTER TABLE outbox ADD COLUMN scope text NOT NULL DEFAULT 'live'",
         "CREATE INDEX outbox_scope ON outbox (scope, id)")),
    (5, ("ALTER TABLE zones ADD COLUMN file_sha256 text",)),
    (6, ("ALTER TABLE alert_audit ADD COLUMN message_time timestamptz",
         "UPDATE alert_audit SET message_time = time WHERE actor = 'rules'")),
    (7, ("ALTER TABLE alerts ADD COLUMN earlier_exercise boolean NOT NULL DEFAULT false",)),
)

# --- TimescaleDB 2.x (guarded: only when the extension is available) -------------------------

TIMESCALE_EXTENSION = "CREATE EXTENSION IF NOT EXISTS timescaledb"
#: Without ``timescaledb`` preloaded, CREATE EXTENSION ends the backend (FATAL), so look
#: first. Only superusers and pg_read_all_settings see this setting: no row means unknown.
TIMESCALE_PRELOAD = "SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'"

#: 2.13 and later: the generalised interface with a dimension builder.
TIMESCALE_HYPERTABLE = (
    "SELECT create_hypertable('positions', by_range('time', INTERVAL '1 day'), "
    "create_default_indexes => FALSE, if_not_exists => TRUE, migrate_data => TRUE)"
)
#: Before 2.13 (deprecated since, still accepted): time column and chunk interval by name.
TIMESCALE_HYPERTABLE_OLD = (
    "SELECT create_hypertable('positions', 'time', chunk_time_interval => INTERVAL '1 day', "
    "create_default_indexes => FALSE, if_not_exists => TRUE, migrate_data => TRUE)"
)
TIMESCALE_COMPRESSION_ENABLED = (
    "SELECT compression_enabled FROM timescaledb_information.hypertables "
    "WHERE hypertable_name = 'positions'"
)
# Every column of the unique key must be segment-by or order-by, or TimescaleDB warns that
# uniqueness cannot be checked efficiently on compressed chunks: hence msg_type and drill.
TIMESCALE_COMPRESS = (
    "ALTER TABLE positions SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'mmsi', "
    "timescaledb.compress_orderby = 'time DESC, msg_type, drill')"
)
TIMESCALE_REMOVE_COMPRESSION = (
    "SELECT remove_compression_policy('positions', if_exists => TRUE)"
)
TIMESCALE_COMPRESSION_POLICY = (
    "SELECT add_compression_policy('positions', compress_after => $1::interval, "
    "if_not_exists => TRUE)"
)
TIMESCALE_REMOVE_RETENTION = "SELECT remove_retention_policy('positions', if_exists => TRUE)"
TIMESCALE_RETENTION_POLICY = (
    "SELECT add_retention_policy('positions', drop_after => $1::interval, if_not_exists => TRUE)"
)


def refuse_newer(current: int, known: tuple[Migration, ...], where: str) -> None:
    """A database an upgrade migrated is not for an older release: its writes would miss
    the new columns' meaning (it read them as absent). ``where``: which database, as the
    store's other errors name it (a port may keep several: the live one, a drill's)."""
    latest = max(version for version, _ in known)
    if current > latest:
        from store.base import StoreError

        raise StoreError(f"{where}: schema version {current} is newer than this harbourwatch "
                         f"knows ({latest}): a later release migrated it; run that release or "
                         "a later one, or, to go back to this one, restore the backup taken "
                         "before that upgrade")
