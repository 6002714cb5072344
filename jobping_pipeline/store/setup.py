"""Setup: the vector extension, the embedding column, the state schema, change capture, meta.

Idempotent. The user's jobs table gets nothing but the embedding column (when missing) and the
change-capture triggers; everything else lives in the pipeline's own schema
(``JOBPING_STATE_SCHEMA``). What each ``job_state`` field means and who writes it:
``jobping_pipeline/store/state.md``.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store.catalog import (
    TABLE_COLUMNS,
    Names,
    StoreBase,
    delete_meta,
    read_meta,
    table_identifier,
    write_meta,
)
from jobping_pipeline.store.search import checked_index_definition, search_function, search_function_drop

CREATE_VECTOR_EXTENSION = sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
SCHEMA_EXISTS = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %s")

CAPTURE_OPERATIONS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
# Triggers on the jobs table that feed this state schema (found by their function, whatever
# their name), so that two state schemas, one per embedding column, each keep their own. Only
# triggers enabled ALWAYS count: one disabled (ALTER TABLE ... DISABLE TRIGGER), or left to fire
# only outside session_replication_role = replica, is installed again by the next setup.
CAPTURE_TRIGGER_COUNT = sql.SQL(
    "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid "
    "JOIN pg_namespace pn ON pn.oid = p.pronamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND p.proname = 'capture_job_changes' AND pn.nspname = %s"
    " AND t.tgenabled = 'A'"
)
VECTOR_EXTENSION_SCHEMA = sql.SQL(
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
)
# A unique index on the id column alone (a primary key or a UNIQUE constraint count): without
# one, ``UPDATE ... FROM unnest(ids, vectors)`` could write one id's vector onto two rows.
UNIQUE_ID_INDEX = sql.SQL(
    "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
    "WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indnkeyatts = 1 AND i.indisvalid "
    "AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = %s"
)
LOCK_META = sql.SQL("SELECT key FROM {} FOR UPDATE")
# Set (transaction-local) by the pipeline's own writes of the embedding column: the capture
# trigger takes any other change of a vector for what it is, a vector the pipeline did not make.
VECTOR_WRITE_SETTING = "jobping.vector_write"
DEFAULT_STATE_SCHEMA = "jobping_pipeline"


def capture_trigger_name(state_schema: str, operation: str) -> str:
    """``jobping_capture_update`` for the default state schema (the name installs have had from
    the start), ``jobping_capture_update_<schema>`` for any other, so each schema keeps its own."""
    name = f"jobping_capture_{operation.lower()}"
    return name if state_schema == DEFAULT_STATE_SCHEMA else f"{name}_{state_schema}"[:63]


def add_embedding_column(names: Names, dimensions: int) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} vector({})").format(
        names.jobs, names.embedding, sql.SQL(str(int(dimensions)))
    )


def drop_embedding_column(names: Names) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(names.jobs, names.embedding)


STATE_SCHEMA_VERSION = "5"


def text_versions(names: Names) -> sql.Composed:
    """The one sequence every ``text_version`` is drawn from: a job deleted and inserted again
    with the same id never gets back a version that a vector was already recorded for."""
    return sql.SQL("nextval({}::regclass)").format(
        sql.Literal(f"{sql.Identifier(names.state_schema).as_string(None)}.text_versions")
    )


def vector_digest(expression: sql.Composable) -> sql.Composed:
    """16 bytes that identify a stored vector exactly (md5 of pgvector's binary form): recorded
    when the pipeline writes a vector, compared by every run and by the vector audit, so that a
    vector written by anyone else, or moved to another row, is never taken for the pipeline's."""
    return sql.SQL("decode(md5(vector_send({})), 'hex')").format(expression)


def vector_gone(names: Names) -> sql.Composed:
    """The state of a job whose vector is gone (removed by the application, or behind the
    triggers' back): no vector, due at once."""
    return sql.SQL(
        "text_version = {}, embedded_version = NULL, model_id = NULL, changed_at = now(), app_change = false"
    ).format(text_versions(names))


FOREIGN_VECTOR_SEEN = "vector written outside the pipeline (seen by the capture trigger)"


def foreign_vector(names: Names, reason: sql.Composable) -> sql.Composed:
    """The state of a job whose vector someone else wrote (another writer, a swap, a restore):
    not the pipeline's, so stale and due at once with ``reason`` as its last error (every check
    names it), and no run may take it for unchanged."""
    return sql.SQL(
        "text_version = {}, text_hash = NULL, vector_hash = NULL, model_id = NULL, attempts = 0,"
        " changed_at = now(), app_change = false, last_error = {}"
    ).format(text_versions(names), reason)


def create_state_schema(names: Names) -> list[sql.Composed]:
    """Create (or migrate to version 5) the state schema. Every statement is idempotent."""
    job_state, chunks = names.state("job_state"), names.state("chunks")
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(names.state_schema)),
        sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(names.state("text_versions")),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {chunks} ("
            " chunk_no integer PRIMARY KEY,"
            " chunk_key text NOT NULL UNIQUE,"
            " job_count integer NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        ).format(chunks=chunks),
        # Runs of a chunk that failed as a whole (not one job): the sensor backs off on them.
        sql.SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS failed_runs integer NOT NULL DEFAULT 0,"
            " ADD COLUMN IF NOT EXISTS last_run_error text, ADD COLUMN IF NOT EXISTS retry_at_tick bigint"
        ).format(chunks),
        # Runs the sensor requested for the chunk: each request's run key names its number (version 5).
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS requests integer NOT NULL DEFAULT 0").format(chunks),
        # Run liveness (store/runs.py); version 5.
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " run_id text PRIMARY KEY,"
            " host text,"
            " pid integer,"
            " started_at timestamptz NOT NULL DEFAULT now(),"
            " beat_at timestamptz NOT NULL DEFAULT now(),"
            " ended_at timestamptz)"
        ).format(names.state("run_heartbeats")),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {job_state} ("
            " job_id {id_type} PRIMARY KEY,"
            " chunk_no integer REFERENCES {chunks},"
            " text_version bigint NOT NULL DEFAULT {next_version},"
            " embedded_version bigint,"
            " text_hash bytea,"
            " model_id text,"
            " embedded_at timestamptz,"
            " attempts integer NOT NULL DEFAULT 0,"
            " last_error text,"
            " changed_at timestamptz NOT NULL DEFAULT now(),"
            " dirty boolean GENERATED ALWAYS AS (embedded_version IS DISTINCT FROM text_version) STORED)"
        ).format(job_state=job_state, id_type=sql.SQL(names.id_type), chunks=chunks, next_version=text_versions(names)),
        sql.SQL("ALTER TABLE {} ALTER COLUMN text_version SET DEFAULT {}").format(job_state, text_versions(names)),
        # True only for a change the application made (the trigger): such a job may be pending
        # for the grace period. Jobs queued by setup or made due by a column switch are due at once.
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS app_change boolean NOT NULL DEFAULT false").format(job_state),
        # A mirror of JOBPING_ELIGIBLE_COLUMN kept by the trigger, so coverage can be counted from
        # the state alone (store/coverage.py, state_coverage).
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS eligible boolean NOT NULL DEFAULT true").format(job_state),
        # The digest of the vector the pipeline wrote (vector_digest); version 4.
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS vector_hash bytea").format(job_state),
        # Versions from before the sequence must stay below every version it hands out.
        sql.SQL(
            "SELECT setval({seq}, greatest((SELECT last_value FROM {seq_table}),"
            " (SELECT coalesce(max(greatest(text_version, embedded_version)), 0) + 1 FROM {job_state})))"
        ).format(
            seq=sql.Literal(f"{sql.Identifier(names.state_schema).as_string(None)}.text_versions"),
            seq_table=names.state("text_versions"),
            job_state=job_state,
        ),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text NOT NULL)").format(
            names.state("meta")
        ),
        # Which installation (jobs database and state schema) a run belongs to, for runs that
        # never beat a heartbeat (liveness.py); version 5.
        sql.SQL(
            "INSERT INTO {} (key, value) VALUES ('installation', gen_random_uuid()::text) ON CONFLICT (key) DO NOTHING"
        ).format(names.state("meta")),
        sql.SQL("CREATE INDEX IF NOT EXISTS job_state_chunk ON {} (chunk_no)").format(job_state),
        sql.SQL("CREATE INDEX IF NOT EXISTS job_state_unassigned ON {} (job_id) WHERE chunk_no IS NULL").format(
            job_state
        ),
        # A real column (not the expression) so the planner has statistics for it: with almost
        # no dirty jobs it picks this partial index, and a sensor tick costs well under 1 ms.
        sql.SQL("CREATE INDEX IF NOT EXISTS job_state_dirty ON {} (chunk_no) WHERE dirty").format(job_state),
    ]


def install_change_capture(names: Names, vector_schema: str) -> list[sql.Composed]:
    """Statement-level triggers with transition tables: one statement per INSERT/UPDATE/DELETE
    on jobs, however many rows it touches, so bulk loads stay fast. Only a change of a text
    column marks a job dirty; writes of the embedding by the pipeline, ``updated_at`` bumps and
    any other column change nothing. A vector written by anyone else makes the job stale and due;
    a vector removed makes it missing and due. An UPDATE that changes primary keys is an insert
    of the new ids and a delete of the old ones; TRUNCATE forgets every job. Every new version
    comes from one sequence.

    The triggers are enabled ALWAYS: they fire under ``session_replication_role = replica`` too
    (bulk fixes, ``pg_restore --disable-triggers``, logical replication), which the pipeline's own
    writes use only to keep the application's triggers quiet. Values are compared as text, fully
    qualified, so every column type compares under the function's fixed ``search_path``."""
    job_state = names.state("job_state")

    def as_text(column: str, alias: str) -> sql.Composable:
        return sql.SQL("{}.{}::pg_catalog.text").format(sql.Identifier(alias), sql.Identifier(column))

    changed = sql.SQL(" OR ").join(
        sql.SQL("{} IS DISTINCT FROM {}").format(as_text(column, "o"), as_text(column, "n"))
        for column in names.text_columns
    )
    update_bump = sql.SQL("text_version = {next_version}, changed_at = now(), attempts = 0, app_change = true").format(
        next_version=text_versions(names)
    )
    bump = sql.SQL("{}, eligible = excluded.eligible").format(update_bump)
    # The pipeline never writes NULL: a vector removed behind its back makes the job missing and
    # due at once, so coverage counted from the state alone stays true (store/coverage.py).
    vector_removed = sql.SQL(
        "    UPDATE {job_state} AS s SET {vector_gone}\n"
        "    FROM old_rows o JOIN new_rows n ON n.{id} = o.{id}\n"
        "    WHERE s.job_id = n.{id} AND o.{embedding} IS NOT NULL AND n.{embedding} IS NULL;\n"
    ).format(job_state=job_state, vector_gone=vector_gone(names), id=names.id, embedding=names.embedding)
    vector_replaced = sql.SQL(
        "    UPDATE {job_state} AS s SET {foreign_vector}\n"
        "    FROM old_rows o JOIN new_rows n ON n.{id} = o.{id}\n"
        "    WHERE s.job_id = n.{id} AND n.{embedding} IS NOT NULL\n"
        "    AND (o.{embedding} IS NULL OR o.{embedding} OPERATOR({vector_schema}.<>) n.{embedding});\n"
    ).format(
        job_state=job_state,
        foreign_vector=foreign_vector(names, sql.Literal(FOREIGN_VECTOR_SEEN)),
        id=names.id,
        embedding=names.embedding,
        vector_schema=sql.Identifier(vector_schema),
    )
    eligibility_changed = sql.SQL(
        "    UPDATE {job_state} AS s SET eligible = {eligible} FROM new_rows n\n"
        "    WHERE s.job_id = n.{id} AND s.eligible IS DISTINCT FROM {eligible};\n"
    ).format(job_state=job_state, eligible=names.eligible("n"), id=names.id)
    function = names.state("capture_job_changes")
    body = sql.SQL(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$\n"
        "BEGIN\n"
        "  IF TG_OP = 'TRUNCATE' THEN\n"
        "    DELETE FROM {job_state};\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        "  IF TG_OP = 'UPDATE' AND current_setting({vector_write}, true) = 'on' THEN\n"
        "    RETURN NULL;  -- the pipeline's own write: the embedding column alone, recorded by it\n"
        "  END IF;\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        "    INSERT INTO {job_state} AS s (job_id, app_change, eligible) SELECT n.{id}, true, {eligible} FROM new_rows n\n"
        "    ON CONFLICT (job_id) DO UPDATE SET {bump};\n"
        "  ELSIF TG_OP = 'UPDATE' THEN\n"
        "    UPDATE {job_state} AS s SET {update_bump}\n"
        "    FROM old_rows o JOIN new_rows n ON n.{id} = o.{id}\n"
        "    WHERE s.job_id = n.{id} AND ({changed});\n"
        "{vector_removed}"
        "{vector_replaced}"
        "{eligibility_changed}"
        "    INSERT INTO {job_state} AS s (job_id, app_change, eligible)\n"
        "    SELECT n.{id}, true, {eligible} FROM new_rows n WHERE NOT EXISTS (SELECT 1 FROM old_rows o WHERE o.{id} = n.{id})\n"
        "    ON CONFLICT (job_id) DO UPDATE SET {bump};\n"
        "    DELETE FROM {job_state} AS s USING old_rows o WHERE s.job_id = o.{id}\n"
        "    AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.{id} = o.{id});\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        "    DELETE FROM {job_state} AS s USING old_rows o WHERE s.job_id = o.{id};\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$body$"
    ).format(
        function=function,
        job_state=job_state,
        id=names.id,
        changed=changed,
        bump=bump,
        update_bump=update_bump,
        eligible=names.eligible("n"),
        vector_write=sql.Literal(VECTOR_WRITE_SETTING),
        vector_removed=vector_removed,
        vector_replaced=vector_replaced,
        eligibility_changed=eligibility_changed if names.eligible_column else sql.SQL(""),
    )
    statements = [body]
    referencing_by_operation = {
        "INSERT": sql.SQL("REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"),
        "UPDATE": sql.SQL("REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"),
        "DELETE": sql.SQL("REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"),
        "TRUNCATE": sql.SQL("FOR EACH STATEMENT"),
    }
    for operation in CAPTURE_OPERATIONS:
        trigger = sql.Identifier(capture_trigger_name(names.state_schema, operation))
        statements.append(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, names.jobs))
        statements.append(
            sql.SQL("CREATE TRIGGER {trigger} AFTER {operation} ON {jobs} {referencing} EXECUTE FUNCTION {function}()").format(
                trigger=trigger,
                operation=sql.SQL(operation),
                jobs=names.jobs,
                referencing=referencing_by_operation[operation],
                function=function,
            )
        )
        statements.append(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(names.jobs, trigger))
    return statements


def enqueue_unregistered_jobs(names: Names) -> sql.Composed:
    """Jobs that have no state row yet (loaded before setup, or while the trigger was off)."""
    return sql.SQL(
        "INSERT INTO {job_state} (job_id, eligible) SELECT j.{id}, {eligible} FROM {jobs} j "
        "WHERE NOT EXISTS (SELECT 1 FROM {job_state} s WHERE s.job_id = j.{id}) "
        "ON CONFLICT (job_id) DO NOTHING"
    ).format(job_state=names.state("job_state"), id=names.id, jobs=names.jobs, eligible=names.eligible("j"))


def mirror_eligibility(names: Names) -> sql.Composed:
    """After JOBPING_ELIGIBLE_COLUMN changed (or state from before version 3): copy each job's
    eligibility into its state row, which the trigger keeps from then on."""
    return sql.SQL(
        "UPDATE {job_state} AS s SET eligible = {eligible} FROM {jobs} j "
        "WHERE j.{id} = s.job_id AND s.eligible IS DISTINCT FROM {eligible}"
    ).format(job_state=names.state("job_state"), eligible=names.eligible("j"), jobs=names.jobs, id=names.id)


def adopt_vector_digests(names: Names) -> sql.Composed:
    """Upgrading to version 4: the digest of each vector the state records as the pipeline's,
    as it stands (trusted as before the upgrade; the audit still checks its text and samples)."""
    return sql.SQL(
        "UPDATE {job_state} AS s SET vector_hash = {digest} FROM {jobs} j "
        "WHERE j.{id} = s.job_id AND s.vector_hash IS NULL AND s.embedded_version IS NOT NULL AND j.{embedding} IS NOT NULL"
    ).format(
        job_state=names.state("job_state"), digest=vector_digest(sql.SQL("j.{}").format(names.embedding)),
        jobs=names.jobs, id=names.id, embedding=names.embedding,
    )


def mark_every_job_dirty(names: Names) -> sql.Composed:
    """After a change of text columns: every job is due again, at once (no grace period)."""
    return sql.SQL(
        "UPDATE {} SET text_version = {}, changed_at = now(), attempts = 0, app_change = false"
    ).format(names.state("job_state"), text_versions(names))


_capture_by_configuration: dict[tuple, tuple[list[sql.Composed], str]] = {}


class SetupStore(StoreBase):
    def setup(self, dimensions: int) -> list[str]:
        """Idempotent: the vector extension, the embedding column, the state schema, the triggers,
        and every existing job queued for a chunk. Returns what it changed, in words.

        When everything is already in place it creates nothing, so a role without CREATE
        privileges (docs/operations.md, "Least privilege") can run it after an owner has; when something
        must change and the role may not, it says what and asks for the owner."""
        with self.connect(vectors=False) as connection:
            table = self.inspect(connection, refresh=True)
            if table.embedding_dimensions is not None and table.embedding_dimensions != dimensions:
                self.check_dimensions(dimensions)
            names = self.names()
            try:
                changes = self._apply_setup(connection, table, names, dimensions)
            except psycopg.errors.InsufficientPrivilege as error:
                raise ConfigError(
                    f"setup needs to change the database and role {self.role(connection)} may not "
                    f"({str(error).strip().splitlines()[0]}): run `jobping-pipeline setup` once as the owner "
                    f"of {self.settings.jobs_table} (docs/operations.md, 'Least privilege')"
                ) from None
            queued = connection.execute(enqueue_unregistered_jobs(names)).rowcount
            if queued:
                changes.append(f"queued {queued} jobs for chunking")
            connection.commit()
        self.inspect(refresh=True)
        return changes

    def _apply_setup(self, connection: psycopg.Connection, table, names: Names, dimensions: int) -> list[str]:
        settings = self.settings
        changes: list[str] = []
        self._check_unique_ids(connection)
        state_exists = connection.execute(TABLE_COLUMNS, (settings.state_schema, "job_state")).fetchall()
        meta = dict(connection.execute(read_meta(names)).fetchall()) if state_exists else {}
        vector_schema = connection.execute(VECTOR_EXTENSION_SCHEMA).fetchone()
        if vector_schema is None:
            connection.execute(CREATE_VECTOR_EXTENSION)
            changes.append("created extension vector")
            vector_schema = connection.execute(VECTOR_EXTENSION_SCHEMA).fetchone()
        wanted_meta, capture = self._wanted(connection, names, table, dimensions, vector_schema[0])
        if not self._outdated(connection, meta, wanted_meta, table, dimensions) and not changes:
            return changes
        if meta:
            # Runs recording vectors as fresh hold these rows FOR SHARE (writes.py): a switch of
            # text or embedding column waits for the write in flight, and a write after it sees
            # the switch and refuses. Taken first, before any state row, so neither waits on the other.
            connection.execute(LOCK_META.format(names.state("meta"))).fetchall()
            meta = dict(connection.execute(read_meta(names)).fetchall())
        if table.embedding_dimensions is None:
            connection.execute(add_embedding_column(names, dimensions))
            changes.append(f"added column {settings.embedding_column} vector({dimensions}) to {settings.jobs_table}")
        self._create_state_schema(connection, names, state_exists, changes)
        if meta and int(meta.get("state_schema_version") or 0) < 4:
            adopted = connection.execute(adopt_vector_digests(names)).rowcount
            if adopted:
                changes.append(f"recorded the digest of {adopted} vectors written before state schema version 4")
        triggers = self._capture_triggers(connection)
        if meta.get("change_capture") != wanted_meta["change_capture"] or triggers != len(CAPTURE_OPERATIONS):
            for statement in capture:
                connection.execute(statement)
            changes.append(
                f"installed change-capture triggers on the jobs table and {settings.state_schema}.match_jobs_by_embedding()"
            )
        if meta.get("eligible_column") != wanted_meta["eligible_column"]:
            mirrored = connection.execute(mirror_eligibility(names)).rowcount
            if mirrored:
                changes.append(f"eligibility of {mirrored} jobs copied from {settings.eligible_column or 'no column (all eligible)'}")
        reason = self._why_every_job_is_due(meta, wanted_meta, table)
        if reason:
            marked = connection.execute(mark_every_job_dirty(names)).rowcount
            changes.append(f"{reason}: {marked} jobs marked for embedding, due at once")
        for key, value in wanted_meta.items():
            if meta.get(key) != value:
                connection.execute(write_meta(names), (key, value))
        return changes

    def _wanted(
        self, connection: psycopg.Connection, names: Names, table, dimensions: int, vector_schema: str
    ) -> tuple[dict[str, str], list]:
        """What setup records in meta for this configuration, and the trigger statements."""
        capture, signature = self._change_capture(connection, names, dimensions, vector_schema)
        wanted = {
            "state_schema_version": STATE_SCHEMA_VERSION,
            "change_capture": signature,
            "text_columns": ",".join(table.text_columns),
            "embedding_column": self.settings.embedding_column,
            "embedding_dimensions": str(dimensions),
            "eligible_column": self.settings.eligible_column or "",
        }
        return wanted, capture

    def _capture_triggers(self, connection: psycopg.Connection) -> int:
        jobs_table = self.settings.jobs_table
        return connection.execute(
            CAPTURE_TRIGGER_COUNT, (jobs_table.schema, jobs_table.name, self.settings.state_schema)
        ).fetchone()[0]

    def _outdated(self, connection, meta: dict[str, str], wanted: dict[str, str], table, dimensions: int) -> list[str]:
        """What differs from what setup would make now: settings recorded in meta, triggers
        missing or not enabled ALWAYS, the embedding column missing. Empty when setup has nothing
        to do. (A column of another dimension is refused by setup and by every run, by name.)"""
        reasons = [f"{key} {meta.get(key)!r} -> {value!r}" for key, value in wanted.items() if meta.get(key) != value]
        if table.embedding_dimensions is None:
            reasons.append(f"embedding column {self.settings.embedding_column} missing")
        if self._capture_triggers(connection) != len(CAPTURE_OPERATIONS):
            reasons.append("change-capture triggers missing or not enabled ALWAYS")
        return reasons

    def setup_outdated(self, dimensions: int) -> list[str]:
        """Why setup must run again for the current configuration (the sensor asks each tick):
        any setting setup depends on changed (text columns, embedding column, eligible column,
        the id column's type, the state schema version), or the triggers were disabled or dropped."""
        with self.connect(autocommit=True, vectors=False) as connection:
            table = self.inspect(connection, refresh=True)
            names = self.names()
            try:
                meta = dict(connection.execute(read_meta(names)).fetchall())
            except psycopg.errors.UndefinedTable:
                return ["the pipeline is not set up"]
            vector_schema = connection.execute(VECTOR_EXTENSION_SCHEMA).fetchone()
            if vector_schema is None:
                return ["the vector extension is missing"]
            wanted, _ = self._wanted(connection, names, table, dimensions, vector_schema[0])
            return self._outdated(connection, meta, wanted, table, dimensions)

    def _check_unique_ids(self, connection: psycopg.Connection) -> None:
        settings = self.settings
        table = table_identifier(settings.jobs_table).as_string(connection)
        if connection.execute(UNIQUE_ID_INDEX, (table, settings.id_column)).fetchone() is None:
            raise ConfigError(
                f"JOBPING_ID_COLUMN={settings.id_column!r}: {settings.jobs_table} has no unique index on "
                f"{settings.id_column} alone, so one id could name two rows and a vector could land on the wrong one. "
                f"Add one (ALTER TABLE {table} ADD PRIMARY KEY ({settings.id_column}), or CREATE UNIQUE INDEX ... "
                f"ON {table} ({settings.id_column})), or set JOBPING_ID_COLUMN to a unique column"
            )

    @staticmethod
    def _why_every_job_is_due(meta: dict[str, str], wanted: dict[str, str], table) -> str | None:
        """A switch of text columns or of embedding column, or a new embedding column on a table
        set up before: no stored vector fits any more. None when nothing of that happened."""
        for key, what in (("text_columns", "text columns"), ("embedding_column", "embedding column")):
            if meta.get(key) is not None and meta[key] != wanted[key]:
                return f"{what} changed from {meta[key]} to {wanted[key]}"
        if "text_columns" in meta and table.embedding_dimensions is None:
            return "the embedding column is new"
        return None

    def _create_state_schema(
        self, connection: psycopg.Connection, names: Names, state_columns: list, changes: list[str]
    ) -> None:
        state_schema = self.settings.state_schema
        if not state_columns:
            changes.append(f"created schema {state_schema} (chunk registry, per-job state)")
        else:
            state_id_type = next(row[1] for row in state_columns if row[0] == "job_id")
            if state_id_type != names.id_type:
                raise ConfigError(
                    f"{state_schema}.job_state keys jobs by {state_id_type}, but "
                    f"{self.settings.jobs_table}.{self.settings.id_column} is {names.id_type}: "
                    f"DROP SCHEMA {state_schema} CASCADE, then run setup and a backfill"
                )
        schema_statement, *table_statements = create_state_schema(names)
        if connection.execute(SCHEMA_EXISTS, (state_schema,)).fetchone() is None:
            connection.execute(schema_statement)
        for statement in table_statements:
            connection.execute(statement)

    def _change_capture(
        self, connection: psycopg.Connection, names: Names, dimensions: int, vector_schema: str
    ) -> tuple[list[sql.Composed], str]:
        """The trigger and search function statements, and their signature (recorded in meta, so
        they are re-installed only when they differ)."""
        key = (names, vector_schema, dimensions)
        if key not in _capture_by_configuration:  # the sensor asks every tick: built once a process
            capture = [*install_change_capture(names, vector_schema), search_function(names, dimensions)]
            signature = hashlib.sha256("\n".join(statement.as_string(connection) for statement in capture).encode())
            _capture_by_configuration[key] = (capture, signature.hexdigest())
        return _capture_by_configuration[key]

    def meta(self) -> dict[str, str]:
        with self.connect(autocommit=True, vectors=False) as connection:
            try:
                return dict(connection.execute(read_meta(self.names())).fetchall())
            except psycopg.errors.UndefinedTable:
                return {}

    def change_embedding_dimensions(self, dimensions: int) -> list[str]:
        """For a model of another dimension: drop the embedding column (and so its vectors and
        indexes) and add it back as vector(dimensions), with its vector indexes built again on
        the empty column, so that re-embedding by the sensor, the UI or the CLI leaves the table
        indexed. Every job is due at once."""
        names = self.names()
        indexes = self.vector_indexes()
        with self.connect(vectors=False) as connection:
            connection.execute(drop_embedding_column(names))
            connection.execute(add_embedding_column(names, dimensions))
            for _, definition, _ in indexes:
                connection.execute(checked_index_definition(names, definition))
            connection.execute(write_meta(names), ("embedding_dimensions", str(dimensions)))
            connection.execute(search_function_drop(names))
            connection.execute(delete_meta(names), ("change_capture",))
            marked = connection.execute(mark_every_job_dirty(names)).rowcount
            connection.commit()
        changes = [
            f"{self.settings.jobs_table}.{self.settings.embedding_column} is now vector({dimensions}); "
            f"its old vectors are gone and its {marked} jobs are due"
        ]
        if indexes:
            changes.append(f"vector indexes {', '.join(name for name, _, _ in indexes)} rebuilt on the new column")
        self.inspect(refresh=True)
        return changes + self.setup(dimensions)
