"""Connecting to the jobs database, and what the live jobs table looks like.

:class:`StoreBase` is the root of :class:`jobping_pipeline.store.JobStore`: the connection, the
table's columns checked against the settings, and :class:`Names`, the quoted identifiers every
other store module builds its SQL from. Table and column names come from configuration and go
through ``psycopg.sql.Identifier``; values always travel as parameters.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator
from dataclasses import dataclass

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from jobping_pipeline.embedded_postgres import JOBS_DATABASE, embedded_server_url
from jobping_pipeline.settings import (
    OPENAI_DEFAULT_MODEL,
    OPENAI_PROVIDER,
    ConfigError,
    QualifiedName,
    Settings,
    redact_url,
)

ID_TYPES = ("smallint", "integer", "bigint", "uuid", "text", "character varying")

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


# Hosted Postgres (Supabase, say) often installs pgvector into a schema such as "extensions",
# which a role's search_path may lack: the pipeline then adds that schema to its own sessions.
VECTOR_SCHEMA = sql.SQL(
    "SELECT n.nspname, n.nspname = ANY(current_schemas(false)) FROM pg_extension e "
    "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
)
APPEND_TO_SEARCH_PATH = sql.SQL(
    "SELECT set_config('search_path', current_setting('search_path') || ', ' || quote_ident(%s), false)"
)
ROW_SECURITY_ACTIVE = sql.SQL("SELECT row_security_active(%s::regclass)")
CURRENT_USER = sql.SQL("SELECT current_user")


class DatabaseUnavailable(RuntimeError):
    """The jobs database cannot be reached; the message never contains a password."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): "text", "text[]", "vector(384)", ...
    type_name: str  # pg_type.typname: "text", "_text", "vector", ...
    not_null: bool


@dataclass(frozen=True)
class JobsTable:
    """What the live jobs table looks like, checked against the settings."""

    id_type: str
    text_columns: tuple[str, ...]
    embedding_dimensions: int | None  # None: the column does not exist yet
    columns: dict[str, Column]


def table_identifier(name: QualifiedName) -> sql.Identifier:
    return sql.Identifier(name.schema, name.name)


@dataclass(frozen=True)
class Names:
    """The quoted identifiers of one configured jobs table and state schema."""

    jobs_table: QualifiedName
    id_column: str
    embedding_column: str
    text_columns: tuple[str, ...]
    state_schema: str
    id_type: str  # as format_type() prints it: bigint, integer, uuid, text ...
    eligible_column: str | None = None

    def eligible(self, alias: str) -> sql.Composable:
        """Whether the row ``alias`` counts in coverage (JOBPING_ELIGIBLE_COLUMN is true; every
        row when none is configured), as a boolean that is never NULL."""
        if self.eligible_column is None:
            return sql.SQL("true")
        return sql.SQL("({}.{} IS TRUE)").format(sql.Identifier(alias), sql.Identifier(self.eligible_column))

    @property
    def jobs(self) -> sql.Identifier:
        return table_identifier(self.jobs_table)

    @property
    def id(self) -> sql.Identifier:
        return sql.Identifier(self.id_column)

    @property
    def embedding(self) -> sql.Identifier:
        return sql.Identifier(self.embedding_column)

    def state(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.state_schema, name)

    @property
    def id_array(self) -> sql.SQL:
        # id_type comes from format_type() of the live column, never from user input.
        return sql.SQL(self.id_type + "[]")

    def text_column_list(self, alias: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column)) for column in self.text_columns
        )


def not_up_to_date(alias: str) -> sql.SQL:
    """A job whose state row ``alias`` says it needs the model: its text changed since its vector
    (``dirty``) or its vector is from another model than ``%(model_id)s``. Its negation is the
    state's own notion of fresh."""
    return sql.SQL(f"({alias}.dirty OR {alias}.model_id IS DISTINCT FROM %(model_id)s)")


def young(alias: str) -> sql.SQL:
    """An application insert or edit of job state ``alias`` within the grace period
    (``%(grace_minutes)s``) that has not failed: pending, not missing, while it is not fresh."""
    return sql.SQL(
        f"coalesce({alias}.app_change AND {alias}.changed_at > now() - make_interval(mins => %(grace_minutes)s)"
        f" AND {alias}.last_error IS NULL, false)"
    )


# --- meta: key/value facts the pipeline keeps in its state schema --------------------------------

def read_meta(names: Names) -> sql.Composed:
    return sql.SQL("SELECT key, value FROM {}").format(names.state("meta"))


def write_meta(names: Names) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    ).format(names.state("meta"))


def delete_meta(names: Names) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE key = %s").format(names.state("meta"))


# Models that fill a column of a given dimension, for the dimension-mismatch message.
_MODELS_BY_DIMENSION = {
    384: "e.g. the bundled all-MiniLM-L6-v2: unset JOBPING_PROVIDER and JOBPING_MODEL",
    1536: f"e.g. OpenAI's, like the seed system's: JOBPING_PROVIDER={OPENAI_PROVIDER} JOBPING_MODEL={OPENAI_DEFAULT_MODEL}",
    3072: f"e.g. JOBPING_PROVIDER={OPENAI_PROVIDER} JOBPING_MODEL=text-embedding-3-large",
}


def _models_of_dimension(dimensions: int) -> str:
    return _MODELS_BY_DIMENSION.get(
        dimensions,
        f"JOBPING_MODEL; with JOBPING_PROVIDER={OPENAI_PROVIDER}, JOBPING_DIMENSIONS={dimensions} asks "
        "text-embedding-3 models for vectors of that size",
    )


def _vector_dimensions(column: Column) -> int | None:
    match = re.fullmatch(r"vector\((\d+)\)", column.type)
    return int(match.group(1)) if match else None


class _LentConnection:
    """A session's connection lent to one call: leaving the call's ``with`` block commits its
    work (or rolls it back after an error), as closing a connection of its own would; the
    connection stays open for the next call."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> psycopg.Connection:
        return self._connection

    def __exit__(self, error_type, error, traceback) -> None:
        self.close(failed=error_type is not None)

    def close(self, failed: bool = False) -> None:
        if failed or self._connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            self._connection.rollback()
        else:
            self._connection.commit()

    def __getattr__(self, name: str):
        return getattr(self._connection, name)


class StoreBase:
    """One configured jobs table: its connection and its checked shape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._url: str | None = None
        self._table: JobsTable | None = None
        self._vector_schema_off_path: str | None = None
        self._session: psycopg.Connection | None = None
        self._session_vectors = False

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.settings.database_url or embedded_server_url(self.settings.data_dir, JOBS_DATABASE)
        return self._url

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Within it, every call of this store uses one connection (a sensor tick makes a dozen
        small calls: a new connection each would cost more than all their queries). Each call's
        work is still committed when the call returns, as on a connection of its own."""
        if self._session is not None:
            yield
            return
        connection = self.connect(vectors=False)
        self._session = connection
        self._session_vectors = False
        try:
            yield
        finally:
            self._session = None
            connection.close()

    def connect(self, *, autocommit: bool = False, vectors: bool = True) -> psycopg.Connection:
        """A new connection (inside :meth:`session`, the session's, lent to one call); pgvector
        types registered when the extension exists."""
        if self._session is not None:
            if vectors and not self._session_vectors:
                self._session_vectors = self._register_vector(self._session)
            return _LentConnection(self._session)  # type: ignore[return-value]
        try:
            connection = psycopg.connect(self.url, autocommit=autocommit, connect_timeout=10)
        except psycopg.OperationalError as error:
            reason = redact_url(str(error).strip().splitlines()[0] if str(error).strip() else "")
            raise DatabaseUnavailable(
                f"cannot connect to JOBPING_DATABASE_URL={self.display_url}: {reason}"
            ) from None
        self._find_vector_extension(connection)
        if self._vector_schema_off_path:
            connection.execute(APPEND_TO_SEARCH_PATH, (self._vector_schema_off_path,))
        if vectors:
            self._register_vector(connection)
        if not autocommit:
            connection.commit()  # ends the set-up reads; a rollback would undo the search_path
        return connection

    @staticmethod
    def _register_vector(connection: psycopg.Connection) -> bool:
        try:
            register_vector(connection)
            return True
        except psycopg.ProgrammingError:
            return False  # no vector extension yet: only setup runs before it exists

    def _find_vector_extension(self, connection: psycopg.Connection) -> None:
        """Once per store (and until the extension exists): where pgvector lives."""
        if self._vector_schema_off_path is not None:
            return
        row = connection.execute(VECTOR_SCHEMA).fetchone()
        if row is not None:
            schema, on_path = row
            self._vector_schema_off_path = "" if on_path else schema

    def inspect(self, connection: psycopg.Connection | None = None, *, refresh: bool = False) -> JobsTable:
        """Read the jobs table's columns and check every configured name against them."""
        if self._table is not None and not refresh:
            return self._table
        settings = self.settings
        own = connection is None
        connection = connection or self.connect(autocommit=True, vectors=False)
        try:
            rows = connection.execute(TABLE_COLUMNS, (settings.jobs_table.schema, settings.jobs_table.name)).fetchall()
        finally:
            if own:
                connection.close()
        if not rows:
            raise ConfigError(
                f"JOBPING_JOBS_TABLE={settings.jobs_table}: no such table in {self.display_url} "
                "(create it, or load demo data with `jobping-pipeline demo-data`)"
            )
        columns = {name: Column(name, type_, type_name, not_null) for name, type_, type_name, _, not_null in rows}
        id_column = columns.get(settings.id_column)
        if id_column is None:
            raise ConfigError(
                f"JOBPING_ID_COLUMN={settings.id_column!r}: table {settings.jobs_table} has no such column"
            )
        if id_column.type not in ID_TYPES:
            raise ConfigError(
                f"JOBPING_ID_COLUMN={settings.id_column!r} has type {id_column.type}; "
                f"supported: {', '.join(ID_TYPES)}"
            )
        self._table = JobsTable(
            id_type=id_column.type,
            text_columns=self._text_columns(columns),
            embedding_dimensions=self._embedding_dimensions(columns),
            columns=columns,
        )
        return self._table

    def _text_columns(self, columns: dict[str, Column]) -> tuple[str, ...]:
        settings = self.settings
        if settings.text_columns_explicit:
            missing = [name for name in settings.text_columns if name not in columns]
            if missing:
                raise ConfigError(
                    f"JOBPING_TEXT_COLUMNS names {', '.join(missing)}, which table "
                    f"{settings.jobs_table} does not have (it has: {', '.join(columns)})"
                )
            return settings.text_columns
        text_columns = tuple(name for name in settings.text_columns if name in columns)
        if not text_columns:
            raise ConfigError(
                f"table {settings.jobs_table} has none of the default text columns "
                f"({', '.join(settings.text_columns)}); set JOBPING_TEXT_COLUMNS"
            )
        return text_columns

    def _embedding_dimensions(self, columns: dict[str, Column]) -> int | None:
        embedding = columns.get(self.settings.embedding_column)
        if embedding is None:
            return None
        dimensions = _vector_dimensions(embedding)
        if dimensions is None:
            raise ConfigError(
                f"JOBPING_EMBEDDING_COLUMN={self.settings.embedding_column!r} has type {embedding.type}; "
                "it must be a pgvector column with a fixed dimension, e.g. vector(384)"
            )
        return dimensions

    def names(self) -> Names:
        table = self.inspect()
        return Names(
            jobs_table=self.settings.jobs_table,
            id_column=self.settings.id_column,
            embedding_column=self.settings.embedding_column,
            text_columns=table.text_columns,
            state_schema=self.settings.state_schema,
            id_type=table.id_type,
            eligible_column=self.settings.eligible_column,
        )

    def check_dimensions(self, dimensions: int, model_id: str | None = None) -> None:
        """Refuse a model whose vectors do not fit the embedding column, naming every way on:
        keep the column, a second column beside it, or replacing the column."""
        existing = self.inspect().embedding_dimensions
        if existing is not None and existing != dimensions:
            settings = self.settings
            column = f"{settings.jobs_table}.{settings.embedding_column}"
            model = f"The model {model_id}" if model_id else "The configured model (JOBPING_MODEL)"
            raise ConfigError(
                f"{model} makes {dimensions}-dimensional vectors but {column} is vector({existing}). "
                f"Either (a) keep the column: configure a {existing}-dimensional model "
                f"({_models_of_dimension(existing)}) and run `jobping-pipeline backfill`; or (b) embed into "
                "a second column beside it: JOBPING_EMBEDDING_COLUMN=<new column> with "
                "JOBPING_STATE_SCHEMA=<a state schema of its own for that column>, run `jobping-pipeline "
                "backfill`, switch the app to the new column once "
                "`jobping-pipeline status` shows 100%, then drop the old column; or (c) replace the "
                f"column: `jobping-pipeline prepare-model-change --yes` drops its {existing}-dimensional "
                "vectors (search finds nothing until the backfill has run), then `jobping-pipeline backfill`."
            )
        if existing is None:
            raise ConfigError(
                f"{self.settings.jobs_table}.{self.settings.embedding_column} does not exist: "
                "run `jobping-pipeline setup` first"
            )

    def row_security_active(self, connection: psycopg.Connection) -> bool:
        """Whether row-level security filters what this role sees or updates of the jobs table."""
        table = table_identifier(self.settings.jobs_table).as_string(connection)
        return bool(connection.execute(ROW_SECURITY_ACTIVE, (table,)).fetchone()[0])

    @staticmethod
    def role(connection: psycopg.Connection) -> str:
        return connection.execute(CURRENT_USER).fetchone()[0]

    def existing_job_count(self) -> int | None:
        """Rows in the jobs table, or None when it does not exist."""
        name = self.settings.jobs_table
        with self.connect(autocommit=True, vectors=False) as connection:
            if connection.execute(TABLE_EXISTS, (name.schema, name.name)).fetchone() is None:
                return None
            return connection.execute(sql.SQL("SELECT count(*) FROM {}").format(table_identifier(name))).fetchone()[0]
