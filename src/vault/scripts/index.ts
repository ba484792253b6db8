export { ScriptRegistry } from './script-registry.ts';
