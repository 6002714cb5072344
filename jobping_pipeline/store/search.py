"""Search over the vectors: jobping's SQL function, the CLI's nearest jobs, and vector indexes
(an HNSW index for search, and dropping such indexes during big backfills)."""

from __future__ import annotations

import re
import time

import psycopg
from psycopg import sql

from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store.catalog import Names, StoreBase, delete_meta, read_meta, write_meta

DEFERRED_INDEX_PREFIX = "deferred_index:"

VECTOR_INDEXES = sql.SQL(
    "SELECT ic.relname, pg_get_indexdef(i.indexrelid), am.amname FROM pg_index i "
    "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
    "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) "
    "WHERE n.nspname = %s AND t.relname = %s AND a.attname = %s AND am.amname IN ('hnsw', 'ivfflat') "
    "ORDER BY ic.relname"
)

INDEX_EXISTS = sql.SQL(
    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'i'"
)


def search_function(names: Names, dimensions: int) -> sql.Composed:
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
        function=names.state("match_jobs_by_embedding"),
        dimensions=sql.SQL(str(int(dimensions))),
        id_type=sql.SQL(names.id_type),
        id=names.id,
        embedding=names.embedding,
        jobs=names.jobs,
    )


def search_function_drop(names: Names) -> sql.Composed:
    return sql.SQL("DROP FUNCTION IF EXISTS {}").format(names.state("match_jobs_by_embedding"))


def hnsw_index_name(names: Names) -> str:
    return f"{names.jobs_table.name}_{names.embedding_column}_hnsw"[:63]


def create_hnsw_index(names: Names) -> sql.Composed:
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} vector_cosine_ops)").format(
        sql.Identifier(hnsw_index_name(names)), names.jobs, names.embedding
    )


# pg_get_indexdef() of an HNSW or IVFFlat index on one column, with plain identifiers and
# numeric options: nothing else is executed from the meta table, which a role that can write
# the state schema could otherwise use to run SQL as whoever restores the indexes.
_INDEX_DEFINITION = re.compile(
    r"CREATE INDEX (?P<name>\w+) ON (?P<table>\w+\.\w+) USING (?:hnsw|ivfflat) "
    r"\((?P<column>\w+) vector_(?:l2|ip|cosine|l1)_ops\)(?: WITH \(\w+='?\d+'?(?:, \w+='?\d+'?)*\))?"
)


def checked_index_definition(names: Names, definition: str) -> sql.SQL:
    """``definition`` as a statement, if it is a vector index on the embedding column."""
    match = _INDEX_DEFINITION.fullmatch(definition)
    table = f"{names.jobs_table.schema}.{names.jobs_table.name}"
    if match is None or match["table"] != table or match["column"] != names.embedding_column:
        raise ConfigError(
            f"refusing to execute index definition {definition[:200]!r}: it is not a plain HNSW or IVFFlat "
            f"index on {table}.{names.embedding_column}; create that index by hand"
        )
    return sql.SQL(definition)  # checked above: names, a method, an operator class, numbers


def drop_index(names: Names, index_name: str) -> sql.Composed:
    return sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(names.jobs_table.schema, index_name))


def nearest_jobs(names: Names, display_columns: tuple[str, ...], eligible_column: str | None) -> sql.Composed:
    """The ``%(limit)s`` jobs nearest to ``%(query)s`` by cosine distance."""
    columns = sql.SQL("").join(sql.SQL(", j.{}").format(sql.Identifier(column)) for column in display_columns)
    eligible = (
        sql.SQL(" AND j.{} IS TRUE").format(sql.Identifier(eligible_column)) if eligible_column else sql.SQL("")
    )
    return sql.SQL(
        "SELECT j.{id}::text, round((1 - (j.{embedding} <=> %(query)s))::numeric, 4){columns} "
        "FROM {jobs} j WHERE j.{embedding} IS NOT NULL{eligible} "
        "ORDER BY j.{embedding} <=> %(query)s LIMIT %(limit)s"
    ).format(id=names.id, embedding=names.embedding, columns=columns, jobs=names.jobs, eligible=eligible)


class SearchStore(StoreBase):
    def nearest_jobs(self, query_vector, limit: int) -> list[tuple]:
        """(id, similarity, display columns...) of the ``limit`` nearest jobs."""
        display = self.inspect().text_columns[:3]
        with self.connect(autocommit=True) as connection:
            return list(
                connection.execute(
                    nearest_jobs(self.names(), display, self.settings.eligible_column),
                    {"query": query_vector, "limit": limit},
                )
            )

    def create_hnsw_index(self) -> tuple[str, float] | None:
        """Build an HNSW index (cosine) on the embedding column unless one exists; returns its
        name and build seconds, or None when there already was a vector index."""
        if self.vector_indexes():
            return None
        names = self.names()
        started = time.perf_counter()
        with self.connect(autocommit=True, vectors=False) as connection:
            connection.execute(create_hnsw_index(names))
        return hnsw_index_name(names), time.perf_counter() - started

    def vector_indexes(self) -> list[tuple[str, str, str]]:
        """(name, definition, method) of every HNSW or IVFFlat index on the embedding column."""
        name = self.settings.jobs_table
        with self.connect(autocommit=True, vectors=False) as connection:
            return list(
                connection.execute(VECTOR_INDEXES, (name.schema, name.name, self.settings.embedding_column))
            )

    def defer_vector_indexes(self) -> list[str]:
        """Drop the vector indexes on the embedding column, recording their definitions first so
        that :meth:`restore_vector_indexes` (at the end of this or, if this process dies, the next
        ``jobping-pipeline backfill``) builds them again. Returns the names dropped."""
        names = self.names()
        dropped = []
        with self.connect(vectors=False) as connection:
            for index_name, definition, _ in self.vector_indexes():
                connection.execute(write_meta(names), (DEFERRED_INDEX_PREFIX + index_name, definition))
                connection.execute(drop_index(names, index_name))
                dropped.append(index_name)
            connection.commit()
        return dropped

    def restore_vector_indexes(self, connection: psycopg.Connection | None = None) -> list[str]:
        """Build every index that :meth:`defer_vector_indexes` dropped and forget its record."""
        names = self.names()
        own = connection is None
        connection = connection or self.connect(vectors=False)
        restored = []
        try:
            for key, definition in connection.execute(read_meta(names)).fetchall():
                if not key.startswith(DEFERRED_INDEX_PREFIX):
                    continue
                index_name = key[len(DEFERRED_INDEX_PREFIX) :]
                exists = connection.execute(INDEX_EXISTS, (self.settings.jobs_table.schema, index_name)).fetchone()
                if not exists:
                    connection.execute(checked_index_definition(names, definition))
                connection.execute(delete_meta(names), (key,))
                restored.append(index_name)
            if own:
                connection.commit()
        finally:
            if own:
                connection.close()
        return restored
