export { findPostgresBinary, runPostgresClient } from './postgres-binaries.ts';
export { createPostgresDialect, isPostgresUrl, type PostgresConnection } from './postgres-dialect.ts';
