export { type ErrorCode, HavenError, notFound } from './haven-error.ts';
