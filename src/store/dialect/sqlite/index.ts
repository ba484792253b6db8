export { NodeSqliteDatabase } from './node-sqlite-database.ts';
export { NodeSqliteDialect, type NodeSqliteOptions, openNodeSqlite } from './node-sqlite-dialect.ts';
