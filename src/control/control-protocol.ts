/**
 * The control channel's messages. A connection has two phases:
 *
 * 1. Handshake (frames with a `type`): vault -> `challenge`, host -> `hello`,
 *    vault -> `welcome` or `rejected` (then closes).
 * 2. Session: JSON-RPC-like messages in both directions: requests
 *    `{id, method, params}`, responses `{id, result}` or
 *    `{id, error: {code, message, details}}`, and notifications
 *    `{method, params}` (no id, no answer).
 */
import type { ErrorCode } from '../errors/index.ts';

export const CONTROL_PROTOCOL_VERSION = 1;

/** Frames a peer may send before it is authenticated are small. */
export const HANDSHAKE_MAX_FRAME_BYTES = 64 * 1024;

export interface ChallengeFrame {
  type: 'challenge';
  protocol: number;
  nonce: string;
}

export interface HelloFrame {
  type: 'hello';
  protocol: number;
  hostId: string;
  proof: string;
}

export interface WelcomeFrame {
  type: 'welcome';
  protocol: number;
  /** The vault decides the heartbeat rate so liveness is configured in one place. */
  heartbeatIntervalMs: number;
}

export interface RejectedFrame {
  type: 'rejected';
  code: ErrorCode;
  reason: string;
}

export interface RpcRequest {
  id: number;
  method: string;
  params: unknown;
}

export interface RpcNotification {
  method: string;
  params: unknown;
}

export interface RpcErrorBody {
  code: ErrorCode;
  message: string;
  details: Record<string, unknown>;
}

export type RpcResponse = { id: number; result: unknown } | { id: number; error: RpcErrorBody };

/** Host -> vault notifications. */
export const HOST_NOTIFICATIONS = ['heartbeat', 'inventory', 'event'] as const;
export type HostNotification = (typeof HOST_NOTIFICATIONS)[number];

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
