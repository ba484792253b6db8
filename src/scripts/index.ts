export {
  type LoadedScript,
  runScript,
  SCRIPT_OUTPUT_HEAD_BYTES,
  SCRIPT_OUTPUT_TAIL_BYTES,
  SCRIPT_PATH,
  type ScriptRequest,
  type ScriptResult,
} from './run-script.ts';
export { DEFAULT_SCRIPT_USER, type ScriptUser, scriptUser } from './script-user.ts';
