// amrpc/react: React hooks over a worker's mirror.
import type { ReactNode, ReactElement } from "react";
import type { AmrpcError, Clock, ConnectOptions, Dropped, RemoteMachine, Status, Transition } from "amrpc";

/** What `useWorker` returns. */
export interface WorkerState {
  /** The connected mirror, or null while connecting / after a refusal. */
  machine: RemoteMachine | null;
  /** The connection status ("connecting" before the first handshake, "closed" after a refusal). */
  status: Status;
  /** Why connecting failed for good. */
  error: AmrpcError | null;
}

/**
 * Connect to `url` while the component is mounted (null or "": don't connect). The connection is
 * closed on unmount and when `url` changes; `options` are read when connecting.
 */
export function useWorker(url: string | null, options?: ConnectOptions): WorkerState;

/** Make a worker (`useWorker`'s result) the default of the hooks below. */
export function WorkerProvider(props: { worker: WorkerState; children?: ReactNode }): ReactElement;

/** The nearest provider's machine (or `machine`), e.g. for mutations; null before connecting. */
export function useMachine(machine?: RemoteMachine | null): RemoteMachine | null;

/** Whether `state` is active (false before connecting). Re-renders when it changes. */
export function useIs(state: string, machine?: RemoteMachine | null): boolean;

/** `state`'s tick (0 before connecting). */
export function useTick(state: string, machine?: RemoteMachine | null): number;

/** The whole mirrored clock; a new object on each change. */
export function useClock(machine?: RemoteMachine | null): Clock;

/** The latest transitions (oldest first, at most `limit`, default 200) and how many the server
 * dropped; needs a machine connected with `stream: true`. */
export function useTransitions(
  limit?: number,
  machine?: RemoteMachine | null,
): { transitions: Transition[]; dropped: number };

/** Bind `useWorker` to another build's `connect` (e.g. `amrpc`'s bundler build, which needs a
 * wasm plugin); the other hooks take any machine. */
export function createHooks(
  connect: (url: string, options?: ConnectOptions) => Promise<RemoteMachine>,
): { useWorker: typeof useWorker };

export type { Dropped, Transition };
