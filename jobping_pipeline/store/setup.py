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
from jobping_pipeline.store.catalog import TABLE_COLUMNS, Names, StoreBase, delete_meta, read_meta, write_meta
from jobping_pipeline.store.search import search_function, search_function_drop

VECTOR_EXTENSION_VERSION = sql.SQL("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
CREATE_VECTOR_EXTENSION = sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
SCHEMA_EXISTS = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %s")

CAPTURE_OPERATIONS = ("INSERT", "UPDATE", "DELETE")
CAPTURE_TRIGGER_COUNT = sql.SQL(
    "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND t.tgname LIKE 'jobping\\_capture\\_%%'"
)


def add_embedding_column(names: Names, dimensions: int) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} vector({})").format(
        names.jobs, names.embedding, sql.SQL(str(int(dimensions)))
    )


def drop_embedding_column(names: Names) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(names.jobs, names.embedding)


def create_state_schema(names: Names) -> list[sql.Composed]:
    job_state, chunks = names.state("job_state"), names.state("chunks")
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(names.state_schema)),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {chunks} ("
            " chunk_no integer PRIMARY KEY,"
            " chunk_key text NOT NULL UNIQUE,"
            " job_count integer NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        ).format(chunks=chunks),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {job_state} ("
            " job_id {id_type} PRIMARY KEY,"
            " chunk_no integer REFERENCES {chunks},"
            " text_version bigint NOT NULL DEFAULT 1,"
            " embedded_version bigint,"
            " text_hash bytea,"
            " model_id text,"
            " embedded_at timestamptz,"
            " attempts integer NOT NULL DEFAULT 0,"
            " last_error text,"
            " changed_at timestamptz NOT NULL DEFAULT now(),"
            " dirty boolean GENERATED ALWAYS AS (embedded_version IS DISTINCT FROM text_version) STORED)"
        ).format(job_state=job_state, id_type=sql.SQL(names.id_type), chunks=chunks),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text NOT NULL)").format(
            names.state("meta")
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS job_state_chunk ON {} (chunk_no)").format(job_state),
        sql.SQL("CREATE INDEX IF NOT EXISTS job_state_unassigned ON {} (job_id) WHERE chunk_no IS NULL").format(
            job_state
        ),
        # A real column (not the expression) so the planner has statistics for it: with almost
        # no dirty jobs it picks this partial index, and a sensor tick costs well under 1 ms.
        sql.SQL("CREATE INDEX IF NOT EXISTS job_state_dirty ON {} (chunk_no) WHERE dirty").format(job_state),
    ]


def install_change_capture(names: Names) -> list[sql.Composed]:
    """Statement-level triggers with transition tables: one statement per INSERT/UPDATE/DELETE
    on jobs, however many rows it touches, so bulk loads stay fast. Only a change of a text
    column marks a job dirty; writes of the embedding, ``updated_at`` bumps and any other column
    change nothing."""
    job_state = names.state("job_state")
    changed = sql.SQL(" OR ").join(
        sql.SQL("o.{c} IS DISTINCT FROM n.{c}").format(c=sql.Identifier(column)) for column in names.text_columns
    )
    function = names.state("capture_job_changes")
    body = sql.SQL(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        "    INSERT INTO {job_state} AS s (job_id) SELECT n.{id} FROM new_rows n\n"
        "    ON CONFLICT (job_id) DO UPDATE\n"
        "    SET text_version = s.text_version + 1, changed_at = now(), attempts = 0;\n"
        "  ELSIF TG_OP = 'UPDATE' THEN\n"
        "    UPDATE {job_state} AS s\n"
        "    SET text_version = s.text_version + 1, changed_at = now(), attempts = 0\n"
        "    FROM old_rows o JOIN new_rows n ON n.{id} = o.{id}\n"
        "    WHERE s.job_id = n.{id} AND ({changed});\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        "    DELETE FROM {job_state} AS s USING old_rows o WHERE s.job_id = o.{id};\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$body$"
    ).format(function=function, job_state=job_state, id=names.id, changed=changed)
    statements = [body]
    referencing_by_operation = {
        "INSERT": "NEW TABLE AS new_rows",
        "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "DELETE": "OLD TABLE AS old_rows",
    }
    for operation in CAPTURE_OPERATIONS:
        trigger = sql.Identifier(f"jobping_capture_{operation.lower()}")
        statements.append(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, names.jobs))
        statements.append(
            sql.SQL(
                "CREATE TRIGGER {trigger} AFTER {operation} ON {jobs} REFERENCING {referencing} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            ).format(
                trigger=trigger,
                operation=sql.SQL(operation),
                jobs=names.jobs,
                referencing=sql.SQL(referencing_by_operation[operation]),
                function=function,
            )
        )
    return statements


def enqueue_unregistered_jobs(names: Names) -> sql.Composed:
    """Jobs that have no state row yet (loaded before setup, or while the trigger was off)."""
    return sql.SQL(
        "INSERT INTO {job_state} (job_id) SELECT j.{id} FROM {jobs} j "
        "WHERE NOT EXISTS (SELECT 1 FROM {job_state} s WHERE s.job_id = j.{id}) "
        "ON CONFLICT (job_id) DO NOTHING"
    ).format(job_state=names.state("job_state"), id=names.id, jobs=names.jobs)


def mark_every_job_dirty(names: Names) -> sql.Composed:
    return sql.SQL("UPDATE {} SET text_version = text_version + 1, changed_at = now(), attempts = 0").format(
        names.state("job_state")
    )


class SetupStore(StoreBase):
    def setup(self, dimensions: int) -> list[str]:
        """Idempotent: the vector extension, the embedding column, the state schema, the triggers,
        and every existing job queued for a chunk. Returns what it changed, in words."""
        changes: list[str] = []
        settings = self.settings
        with self.connect(vectors=False) as connection:
            table = self.inspect(connection, refresh=True)
            if table.embedding_dimensions is not None and table.embedding_dimensions != dimensions:
                self.check_dimensions(dimensions)
            if connection.execute(VECTOR_EXTENSION_VERSION).fetchone() is None:
                connection.execute(CREATE_VECTOR_EXTENSION)
                changes.append("created extension vector")
            names = self.names()
            if table.embedding_dimensions is None:
                connection.execute(add_embedding_column(names, dimensions))
                changes.append(
                    f"added column {settings.embedding_column} vector({dimensions}) to {settings.jobs_table}"
                )
            self._create_state_schema(connection, names, changes)
            meta = dict(connection.execute(read_meta(names)).fetchall())
            self._install_change_capture(connection, names, meta, dimensions, changes)
            text_columns = ",".join(table.text_columns)
            recorded_columns = meta.get("text_columns")
            if recorded_columns is not None and recorded_columns != text_columns:
                marked = connection.execute(mark_every_job_dirty(names)).rowcount
                changes.append(
                    f"text columns changed from {recorded_columns} to {text_columns}: trigger "
                    f"re-installed, {marked} jobs marked for re-embedding"
                )
            if recorded_columns != text_columns:
                connection.execute(write_meta(names), ("text_columns", text_columns))
            if meta.get("embedding_dimensions") != str(dimensions):
                connection.execute(write_meta(names), ("embedding_dimensions", str(dimensions)))
            queued = connection.execute(enqueue_unregistered_jobs(names)).rowcount
            if queued:
                changes.append(f"queued {queued} jobs for chunking")
            connection.commit()
        self.inspect(refresh=True)
        return changes

    def _create_state_schema(self, connection: psycopg.Connection, names: Names, changes: list[str]) -> None:
        state_schema = self.settings.state_schema
        state_columns = connection.execute(TABLE_COLUMNS, (state_schema, "job_state")).fetchall()
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

    def _install_change_capture(
        self, connection: psycopg.Connection, names: Names, meta: dict[str, str], dimensions: int, changes: list[str]
    ) -> None:
        """Triggers are (re)installed only when missing or different, so a role that owns only
        the state schema can run setup (and backfills) once an owner has set the table up."""
        capture = [*install_change_capture(names), search_function(names, dimensions)]
        signature = hashlib.sha256(
            "\n".join(statement.as_string(connection) for statement in capture).encode()
        ).hexdigest()
        jobs_table = self.settings.jobs_table
        installed = connection.execute(CAPTURE_TRIGGER_COUNT, (jobs_table.schema, jobs_table.name)).fetchone()[0]
        if meta.get("change_capture") != signature or installed != len(CAPTURE_OPERATIONS):
            for statement in capture:
                connection.execute(statement)
            connection.execute(write_meta(names), ("change_capture", signature))
            changes.append(
                "installed change-capture triggers on the jobs table and "
                f"{self.settings.state_schema}.match_jobs_by_embedding()"
            )

    def meta(self) -> dict[str, str]:
        with self.connect(autocommit=True, vectors=False) as connection:
            try:
                return dict(connection.execute(read_meta(self.names())).fetchall())
            except psycopg.errors.UndefinedTable:
                return {}

    def change_embedding_dimensions(self, dimensions: int) -> list[str]:
        """For a model of another dimension: drop the embedding column (and so its vectors and
        indexes, whose definitions are kept for the end of the next backfill) and add it back as
        vector(dimensions). Every job is then stale by model id; the backfill re-embeds them."""
        names = self.names()
        deferred = self.defer_vector_indexes()
        with self.connect(vectors=False) as connection:
            connection.execute(drop_embedding_column(names))
            connection.execute(add_embedding_column(names, dimensions))
            connection.execute(write_meta(names), ("embedding_dimensions", str(dimensions)))
            connection.execute(search_function_drop(names))
            connection.execute(delete_meta(names), ("change_capture",))
            connection.commit()
        changes = [
            f"{self.settings.jobs_table}.{self.settings.embedding_column} is now vector({dimensions}); "
            "its old vectors are gone"
        ]
        if deferred:
            changes.append(f"vector indexes {', '.join(deferred)} will be rebuilt at the end of the backfill")
        self.inspect(refresh=True)
        return changes + self.setup(dimensions)
