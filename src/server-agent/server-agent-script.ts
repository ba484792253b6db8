/**
 * The server agent (haven-server-agent.sh): the POSIX shell script a
 * protected physical server runs to enrol, set up its md mirrors over NBD
 * and report to its primary-site host. Shipped as a file so the vault can
 * hand it to an operator and the test guest can carry it.
 */
export const SERVER_AGENT_SCRIPT = new URL('./haven-server-agent.sh', import.meta.url);
