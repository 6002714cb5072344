"""All SQL of the pipeline, in one place.

Every table and column name comes from configuration and goes through ``psycopg.sql.Identifier``;
values always travel as parameters. The only writes to the user's jobs table are
``ALTER TABLE ... ADD COLUMN <embedding>`` (setup, when missing), the change-capture triggers
(setup), and ``UPDATE ... SET <embedding>`` (embedding runs): no INSERT, no upsert, no other column.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from jobping_pipeline.settings import QualifiedName

ADVISORY_LOCK_REGISTER = 728_461_001
ADVISORY_LOCK_CHUNK = 728_461_002
REGISTER_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
DEFERRED_INDEX_PREFIX = "deferred_index:"
CHUNK_KEY_WIDTH = 6

# --- catalog look-ups -------------------------------------------------------------------------

TABLE_EXISTS = sql.SQL(
    "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s"
)

TABLE_COLUMNS = sql.SQL(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.atttypmod, a.attnotnull "
    "FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum"
)

PRIMARY_KEY_COLUMNS = sql.SQL(
    "SELECT a.attname FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
    "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary"
)

VECTOR_EXTENSION_VERSION = sql.SQL("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
CREATE_VECTOR_EXTENSION = sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
SET_REPLICA_ROLE = sql.SQL("SET session_replication_role = replica")
# The coverage join hashes a million small state rows; with the default 4 MB it spills to disk
# and takes twice as long (3.9 s vs 1.7 s at 1M jobs, benchmarks/throughput.py --scale).
COVERAGE_WORK_MEM = sql.SQL("SET LOCAL work_mem = '64MB'")


VECTOR_INDEXES = sql.SQL(
    "SELECT ic.relname, pg_get_indexdef(i.indexrelid), am.amname FROM pg_index i "
    "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
    "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) "
    "WHERE n.nspname = %s AND t.relname = %s AND a.attname = %s AND am.amname IN ('hnsw', 'ivfflat') "
    "ORDER BY ic.relname"
)

SCHEMA_EXISTS = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %s")

CAPTURE_OPERATIONS = ("INSERT", "UPDATE", "DELETE")
CAPTURE_TRIGGER_COUNT = sql.SQL(
    "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND t.tgname LIKE 'jobping\\_capture\\_%%'"
)

INDEX_EXISTS = sql.SQL(
    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'i'"
)


def table(name: QualifiedName) -> sql.Identifier:
    return sql.Identifier(name.schema, name.name)


def count_rows(name: QualifiedName) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {}").format(table(name))


@dataclass(frozen=True)
class JobsSql:
    """The statements for one configured jobs table and state schema."""

    jobs_table: QualifiedName
    id_column: str
    embedding_column: str
    text_columns: tuple[str, ...]
    state_schema: str
    id_type: str  # as format_type() prints it: bigint, integer, uuid, text ...

    # --- identifiers --------------------------------------------------------------------------

    @property
    def _jobs(self) -> sql.Identifier:
        return table(self.jobs_table)

    @property
    def _id(self) -> sql.Identifier:
        return sql.Identifier(self.id_column)

    @property
    def _embedding(self) -> sql.Identifier:
        return sql.Identifier(self.embedding_column)

    def _state(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.state_schema, name)

    @property
    def _id_array(self) -> sql.SQL:
        # id_type comes from format_type() of the live column, never from user input.
        return sql.SQL(self.id_type + "[]")

    # --- setup --------------------------------------------------------------------------------

    def add_embedding_column(self, dimensions: int) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} vector({})").format(
            self._jobs, self._embedding, sql.SQL(str(int(dimensions)))
        )

    def create_state_schema(self) -> list[sql.Composed]:
        schema = sql.Identifier(self.state_schema)
        return [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {chunks} ("
                " chunk_no integer PRIMARY KEY,"
                " chunk_key text NOT NULL UNIQUE,"
                " job_count integer NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            ).format(chunks=self._state("chunks")),
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
            ).format(
                job_state=self._state("job_state"),
                id_type=sql.SQL(self.id_type),
                chunks=self._state("chunks"),
            ),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text NOT NULL)"
            ).format(self._state("meta")),
            sql.SQL("CREATE INDEX IF NOT EXISTS job_state_chunk ON {} (chunk_no)").format(
                self._state("job_state")
            ),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS job_state_unassigned ON {} (job_id) WHERE chunk_no IS NULL"
            ).format(self._state("job_state")),
            # A real column (not the expression) so the planner has statistics for it: with almost
            # no dirty jobs it picks this partial index, and a sensor tick costs well under 1 ms.
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS job_state_dirty ON {} (chunk_no) WHERE dirty"
            ).format(self._state("job_state")),
        ]

    def install_change_capture(self) -> list[sql.Composed]:
        """Statement-level triggers with transition tables: one statement per INSERT/UPDATE/DELETE
        on jobs, however many rows it touches, so bulk loads stay fast. Only a change of a text
        column marks a job dirty; writes of the embedding, ``updated_at`` bumps and any other column
        change nothing."""
        job_state = self._state("job_state")
        changed = sql.SQL(" OR ").join(
            sql.SQL("o.{c} IS DISTINCT FROM n.{c}").format(c=sql.Identifier(column))
            for column in self.text_columns
        )
        function = self._state("capture_job_changes")
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
        ).format(function=function, job_state=job_state, id=self._id, changed=changed)
        statements = [body]
        referencing_by_operation = {
            "INSERT": "NEW TABLE AS new_rows",
            "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            "DELETE": "OLD TABLE AS old_rows",
        }
        for operation in CAPTURE_OPERATIONS:
            referencing = referencing_by_operation[operation]
            trigger = sql.Identifier(f"jobping_capture_{operation.lower()}")
            statements.append(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, self._jobs)
            )
            statements.append(
                sql.SQL(
                    "CREATE TRIGGER {trigger} AFTER {operation} ON {jobs} REFERENCING {referencing} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
                ).format(
                    trigger=trigger,
                    operation=sql.SQL(operation),
                    jobs=self._jobs,
                    referencing=sql.SQL(referencing),
                    function=function,
                )
            )
        return statements

    def search_function(self, dimensions: int) -> sql.Composed:
        """jobping's ``match_jobs_by_embedding``, for the web app: nearest jobs by cosine
        similarity, served by an HNSW index on the column when there is one."""
        return sql.SQL(
            "CREATE OR REPLACE FUNCTION {function}(query_embedding vector({dimensions}),"
            " match_threshold double precision DEFAULT 0, match_count integer DEFAULT 10) "
            "RETURNS TABLE (job_id {id_type}, similarity double precision) "
            "LANGUAGE sql STABLE AS $body$ "
            "SELECT j.{id}, 1 - (j.{embedding} <=> query_embedding) FROM {jobs} j "
            "WHERE j.{embedding} IS NOT NULL AND 1 - (j.{embedding} <=> query_embedding) >= match_threshold "
            "ORDER BY j.{embedding} <=> query_embedding LIMIT match_count $body$"
        ).format(
            function=self._state("match_jobs_by_embedding"),
            dimensions=sql.SQL(str(int(dimensions))),
            id_type=sql.SQL(self.id_type),
            id=self._id,
            embedding=self._embedding,
            jobs=self._jobs,
        )

    def search_function_drop(self) -> sql.Composed:
        return sql.SQL("DROP FUNCTION IF EXISTS {}").format(self._state("match_jobs_by_embedding"))

    def drop_embedding_column(self) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(self._jobs, self._embedding)

    def hnsw_index_name(self) -> str:
        return f"{self.jobs_table.name}_{self.embedding_column}_hnsw"[:63]

    def create_hnsw_index(self) -> sql.Composed:
        return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} vector_cosine_ops)").format(
            sql.Identifier(self.hnsw_index_name()), self._jobs, self._embedding
        )

    def nearest_jobs(self, display_columns: tuple[str, ...], eligible_column: str | None) -> sql.Composed:
        """The ``%(limit)s`` jobs nearest to ``%(query)s`` by cosine distance."""
        columns = sql.SQL("").join(
            sql.SQL(", j.{}").format(sql.Identifier(column)) for column in display_columns
        )
        eligible = (
            sql.SQL(" AND j.{} IS TRUE").format(sql.Identifier(eligible_column)) if eligible_column else sql.SQL("")
        )
        return sql.SQL(
            "SELECT j.{id}::text, round((1 - (j.{embedding} <=> %(query)s))::numeric, 4){columns} "
            "FROM {jobs} j WHERE j.{embedding} IS NOT NULL{eligible} "
            "ORDER BY j.{embedding} <=> %(query)s LIMIT %(limit)s"
        ).format(id=self._id, embedding=self._embedding, columns=columns, jobs=self._jobs, eligible=eligible)

    # --- chunk registry -----------------------------------------------------------------------

    def enqueue_unregistered_jobs(self) -> sql.Composed:
        """Jobs that have no state row yet (loaded before setup, or while the trigger was off)."""
        return sql.SQL(
            "INSERT INTO {job_state} (job_id) SELECT j.{id} FROM {jobs} j "
            "WHERE NOT EXISTS (SELECT 1 FROM {job_state} s WHERE s.job_id = j.{id}) "
            "ON CONFLICT (job_id) DO NOTHING"
        ).format(job_state=self._state("job_state"), id=self._id, jobs=self._jobs)

    def assign_chunks(self) -> sql.Composed:
        """Put every queued job into new chunks of at most ``%(chunk_size)s``, in key order."""
        return sql.SQL(
            "WITH last AS (SELECT coalesce(max(chunk_no), 0) AS chunk_no FROM {chunks}), "
            "numbered AS ("
            " SELECT s.job_id, last.chunk_no + 1"
            "   + (row_number() OVER (ORDER BY s.job_id) - 1) / %(chunk_size)s AS chunk_no"
            " FROM {job_state} s, last WHERE s.chunk_no IS NULL), "
            "new_chunks AS ("
            " INSERT INTO {chunks} (chunk_no, chunk_key, job_count)"
            " SELECT chunk_no, lpad(chunk_no::text, greatest({width}, length(chunk_no::text)), '0'),"
            "  count(*) FROM numbered GROUP BY chunk_no RETURNING chunk_no) "
            "UPDATE {job_state} s SET chunk_no = n.chunk_no FROM numbered n "
            "WHERE s.job_id = n.job_id AND s.chunk_no IS NULL"
        ).format(
            chunks=self._state("chunks"),
            job_state=self._state("job_state"),
            width=sql.Literal(CHUNK_KEY_WIDTH),
        )

    def chunk_keys_after(self) -> sql.Composed:
        return sql.SQL("SELECT chunk_key FROM {} WHERE chunk_no > %s ORDER BY chunk_no").format(
            self._state("chunks")
        )

    def last_chunk_no(self) -> sql.Composed:
        return sql.SQL("SELECT coalesce(max(chunk_no), 0) FROM {}").format(self._state("chunks"))

    def all_chunk_keys(self) -> sql.Composed:
        return sql.SQL("SELECT chunk_key FROM {} ORDER BY chunk_no").format(self._state("chunks"))

    def chunks_with_pending_work(self) -> sql.Composed:
        """Chunks holding a job that is not embedded from its current text by model ``%(model_id)s``
        (joins the jobs table, so an embedding removed behind the pipeline's back counts too)."""
        return sql.SQL(
            "SELECT c.chunk_key, count(*) FROM {job_state} s "
            "JOIN {chunks} c ON c.chunk_no = s.chunk_no "
            "JOIN {jobs} j ON j.{id} = s.job_id "
            "WHERE s.dirty "
            "   OR s.model_id IS DISTINCT FROM %(model_id)s OR j.{embedding} IS NULL "
            "GROUP BY c.chunk_no, c.chunk_key ORDER BY c.chunk_no"
        ).format(
            job_state=self._state("job_state"),
            chunks=self._state("chunks"),
            jobs=self._jobs,
            id=self._id,
            embedding=self._embedding,
        )

    # --- one chunk ----------------------------------------------------------------------------

    def read_chunk(self) -> sql.Composed:
        """State and text of every job of chunk ``%(chunk_key)s``; the job columns are NULL for a
        job deleted since it was registered."""
        columns = sql.SQL(", ").join(
            sql.SQL("j.{}").format(sql.Identifier(column)) for column in self.text_columns
        )
        return sql.SQL(
            "SELECT s.job_id, s.text_version, s.text_hash, s.model_id, s.embedded_version, s.attempts,"
            " j.{id} IS NOT NULL AS job_exists, j.{embedding} IS NOT NULL AS has_embedding, {columns} "
            "FROM {job_state} s JOIN {chunks} c ON c.chunk_no = s.chunk_no "
            "LEFT JOIN {jobs} j ON j.{id} = s.job_id "
            "WHERE c.chunk_key = %(chunk_key)s ORDER BY s.job_id"
        ).format(
            id=self._id,
            embedding=self._embedding,
            columns=columns,
            job_state=self._state("job_state"),
            chunks=self._state("chunks"),
            jobs=self._jobs,
        )

    def chunk_exists(self) -> sql.Composed:
        return sql.SQL("SELECT 1 FROM {} WHERE chunk_key = %s").format(self._state("chunks"))

    def write_embeddings(self) -> sql.Composed:
        """One set-based UPDATE of the embedding column for a whole batch; returns the ids that
        still existed."""
        return sql.SQL(
            "UPDATE {jobs} AS j SET {embedding} = v.embedding "
            "FROM unnest(%b::{id_array}, %b::vector[]) AS v(job_id, embedding) "
            "WHERE j.{id} = v.job_id RETURNING j.{id}"
        ).format(jobs=self._jobs, embedding=self._embedding, id_array=self._id_array, id=self._id)

    def record_embedded(self) -> sql.Composed:
        """Mark a batch embedded: the text hash and text version it was embedded from, the model."""
        return sql.SQL(
            "UPDATE {job_state} AS s SET text_hash = v.text_hash, embedded_version = v.text_version,"
            " model_id = %b, embedded_at = now(), attempts = 0, last_error = NULL "
            "FROM unnest(%b::{id_array}, %b::bytea[], %b::bigint[]) AS v(job_id, text_hash, text_version) "
            "WHERE s.job_id = v.job_id"
        ).format(job_state=self._state("job_state"), id_array=self._id_array)

    def record_failure(self) -> sql.Composed:
        return sql.SQL(
            "UPDATE {} SET attempts = attempts + 1, last_error = %s WHERE job_id = ANY(%b::{})"
        ).format(self._state("job_state"), self._id_array)

    def forget_jobs(self) -> sql.Composed:
        """Drop the state of jobs that no longer exist in the jobs table."""
        return sql.SQL("DELETE FROM {} WHERE job_id = ANY(%b::{})").format(
            self._state("job_state"), self._id_array
        )

    # --- meta -----------------------------------------------------------------------------------

    def read_meta(self) -> sql.Composed:
        return sql.SQL("SELECT key, value FROM {}").format(self._state("meta"))

    def write_meta(self) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {} (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ).format(self._state("meta"))

    def drop_index(self, index_name: str) -> sql.Composed:
        return sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(self.jobs_table.schema, index_name))

    def delete_meta(self) -> sql.Composed:
        return sql.SQL("DELETE FROM {} WHERE key = %s").format(self._state("meta"))

    def chunk_lock(self) -> sql.Composed:
        """A session-level advisory lock per chunk: two runs of one chunk take turns."""
        return sql.SQL("SELECT pg_advisory_lock(%s, chunk_no) FROM {} WHERE chunk_key = %s").format(
            self._state("chunks")
        )

    def chunk_unlock(self) -> sql.Composed:
        return sql.SQL("SELECT pg_advisory_unlock(%s, chunk_no) FROM {} WHERE chunk_key = %s").format(
            self._state("chunks")
        )

    def mark_every_job_dirty(self) -> sql.Composed:
        return sql.SQL(
            "UPDATE {} SET text_version = text_version + 1, changed_at = now(), attempts = 0"
        ).format(self._state("job_state"))

    def requeue_lost_vectors(self) -> sql.Composed:
        """Jobs recorded as embedded whose vector is gone (set to NULL behind the pipeline's back):
        mark them dirty so the sensor embeds them again."""
        return sql.SQL(
            "UPDATE {job_state} AS s SET text_version = s.text_version + 1, changed_at = now() "
            "FROM {jobs} j WHERE j.{id} = s.job_id AND j.{embedding} IS NULL "
            "AND s.embedded_version = s.text_version"
        ).format(job_state=self._state("job_state"), jobs=self._jobs, id=self._id, embedding=self._embedding)

    # --- sensor -------------------------------------------------------------------------------

    def dirty_chunks(self) -> sql.Composed:
        """Chunks with a job whose text changed since its last embedding (or never embedded) and
        that has attempts left. Served by the partial index job_state_dirty: no table scan."""
        return sql.SQL(
            "SELECT c.chunk_key, count(*) FROM {job_state} s JOIN {chunks} c ON c.chunk_no = s.chunk_no "
            "WHERE s.dirty AND s.attempts < %(max_attempts)s "
            "GROUP BY c.chunk_no, c.chunk_key ORDER BY c.chunk_no"
        ).format(job_state=self._state("job_state"), chunks=self._state("chunks"))

    def chunk_progress(self) -> sql.Composed:
        """Per chunk: jobs, and jobs not embedded from their current text by ``%(model_id)s``
        (state only: cheap at any size)."""
        return sql.SQL(
            "SELECT c.chunk_key, count(s.job_id),"
            " count(s.job_id) FILTER (WHERE s.dirty OR s.model_id IS DISTINCT FROM %(model_id)s),"
            " count(s.job_id) FILTER (WHERE s.last_error IS NOT NULL AND (s.dirty OR s.model_id IS DISTINCT FROM %(model_id)s)) "
            "FROM {chunks} c LEFT JOIN {job_state} s ON s.chunk_no = c.chunk_no "
            "GROUP BY c.chunk_no, c.chunk_key ORDER BY c.chunk_no"
        ).format(chunks=self._state("chunks"), job_state=self._state("job_state"))

    def unassigned_count(self) -> sql.Composed:
        return sql.SQL("SELECT count(*) FROM {} WHERE chunk_no IS NULL").format(self._state("job_state"))

    # --- checks -------------------------------------------------------------------------------

    def _job_status(self, eligible_column: str | None) -> sql.Composed:
        """One row per eligible job with its freshness classified (shared by every check query).
        fresh: embedded from its current text by %(model_id)s; young: added or edited within the
        grace period and not failed (so pending if not fresh); stale: has a vector, from another
        model or older text; missing: no vector."""
        eligible = (
            sql.SQL("j.{} IS TRUE").format(sql.Identifier(eligible_column))
            if eligible_column
            else sql.SQL("TRUE")
        )
        return sql.SQL(
            "SELECT j.{id} AS job_id, s.chunk_no, s.last_error, s.attempts,"
            " (j.{embedding} IS NOT NULL AND s.model_id = %(model_id)s"
            "  AND s.embedded_version = s.text_version) AS fresh,"
            " (s.changed_at > now() - make_interval(mins => %(grace_minutes)s)"
            "  AND s.last_error IS NULL) AS young,"
            " j.{embedding} IS NOT NULL AS has_vector "
            "FROM {jobs} j LEFT JOIN {job_state} s ON s.job_id = j.{id} WHERE {eligible}"
        ).format(
            id=self._id,
            embedding=self._embedding,
            jobs=self._jobs,
            job_state=self._state("job_state"),
            eligible=eligible,
        )

    def coverage(self, eligible_column: str | None) -> sql.Composed:
        """Counts over the eligible jobs: eligible, fresh, pending, stale, missing, failed."""
        return sql.SQL(
            "SELECT count(*),"
            " count(*) FILTER (WHERE fresh),"
            " count(*) FILTER (WHERE NOT fresh AND young IS TRUE),"
            " count(*) FILTER (WHERE NOT fresh AND young IS NOT TRUE AND has_vector),"
            " count(*) FILTER (WHERE NOT fresh AND young IS NOT TRUE AND NOT has_vector),"
            " count(*) FILTER (WHERE NOT fresh AND last_error IS NOT NULL) "
            "FROM ({status}) AS status"
        ).format(status=self._job_status(eligible_column))

    def problem_jobs(self, eligible_column: str | None, *, in_chunks: bool) -> sql.Composed:
        """Eligible jobs that are neither fresh nor pending, with their errors (for check metadata);
        with ``in_chunks``, only those of the chunks ``%(chunk_keys)s``, pending ones included."""
        if in_chunks:
            where = sql.SQL(
                "NOT fresh AND chunk_no IN (SELECT chunk_no FROM {} WHERE chunk_key = ANY(%(chunk_keys)s))"
            ).format(self._state("chunks"))
        else:
            where = sql.SQL("NOT fresh AND young IS NOT TRUE")
        return sql.SQL(
            "SELECT job_id::text, has_vector, attempts, last_error FROM ({status}) AS status "
            "WHERE {where} ORDER BY last_error IS NULL, job_id LIMIT %(limit)s"
        ).format(status=self._job_status(eligible_column), where=where)

    def chunk_freshness(self, eligible_column: str | None) -> sql.Composed:
        """Eligible and fresh job counts of the chunks ``%(chunk_keys)s``."""
        return sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh AND last_error IS NOT NULL) "
            "FROM ({status}) AS status "
            "WHERE chunk_no IN (SELECT chunk_no FROM {chunks} WHERE chunk_key = ANY(%(chunk_keys)s))"
        ).format(status=self._job_status(eligible_column), chunks=self._state("chunks"))

    def vector_sanity(self) -> sql.Composed:
        """Vectors whose length is not 1 (the pipeline writes normalized vectors; pgvector itself
        refuses NaN and infinite values and enforces the column's dimension)."""
        return sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE abs(vector_norm({e}) - 1) > %(tolerance)s), "
            "(array_agg({id}::text ORDER BY {id}) FILTER (WHERE abs(vector_norm({e}) - 1) > %(tolerance)s))[1:20] "
            "FROM {jobs} WHERE {e} IS NOT NULL"
        ).format(e=self._embedding, id=self._id, jobs=self._jobs)


# --- demo data ------------------------------------------------------------------------------------

DEMO_COLUMNS = ("title", "company", "location", "description", "categories", "is_active", "created_at", "updated_at")


def create_demo_jobs_table(jobs_table: QualifiedName, id_type: str) -> list[sql.Composed]:
    """jobping's jobs table: NOT NULL title/company, nullable description, a text[] of
    categories, and a trigger of its own that bumps ``updated_at`` on every UPDATE."""
    if id_type == "uuid":
        id_definition = sql.SQL("uuid PRIMARY KEY DEFAULT gen_random_uuid()")
    elif id_type == "integer":
        id_definition = sql.SQL("bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    else:
        raise ValueError(f"id type must be integer or uuid, not {id_type!r}")
    jobs = table(jobs_table)
    bump = sql.Identifier(jobs_table.schema, f"{jobs_table.name}_set_updated_at")
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(jobs_table.schema)),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {jobs} ("
            " id {id_definition},"
            " title text NOT NULL,"
            " company text NOT NULL,"
            " location text,"
            " description text,"
            " categories text[] NOT NULL DEFAULT '{{}}',"
            " is_active boolean NOT NULL DEFAULT true,"
            " created_at timestamptz NOT NULL DEFAULT now(),"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(jobs=jobs, id_definition=id_definition),
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {bump}() RETURNS trigger LANGUAGE plpgsql AS "
            "$body$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $body$"
        ).format(bump=bump),
        sql.SQL("DROP TRIGGER IF EXISTS set_updated_at ON {}").format(jobs),
        sql.SQL(
            "CREATE TRIGGER set_updated_at BEFORE UPDATE ON {jobs} FOR EACH ROW EXECUTE FUNCTION {bump}()"
        ).format(jobs=jobs, bump=bump),
    ]


def copy_demo_jobs(jobs_table: QualifiedName) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        table(jobs_table), sql.SQL(", ").join(map(sql.Identifier, DEMO_COLUMNS))
    )
