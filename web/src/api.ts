// The gateway's HTTP API: bearer token from session storage on every call, SSE over fetch.
import type { Role } from "./gen/api";

const TOKEN_KEY = "conveyor.token";

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public grpcStatus: string,
    message: string,
  ) {
    super(message);
  }
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

let onUnauthenticated: () => void = () => {};
export function setUnauthenticatedHandler(handler: () => void): void {
  onUnauthenticated = handler;
}

async function fail(response: Response): Promise<never> {
  let status = "", message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    status = body?.error?.status ?? "";
    message = body?.error?.message ?? message;
  } catch {
    /* not JSON */
  }
  if (response.status === 401) onUnauthenticated();
  throw new ApiError(response.status, status, message);
}

/** One unary call; `query` values that are arrays repeat the key. */
export async function api<T>(
  path: string,
  opts: { method?: string; body?: unknown; query?: Record<string, string | string[] | undefined> } = {},
): Promise<T> {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(opts.query ?? {})) {
    if (v === undefined || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) url.searchParams.append(k, item);
  }
  const init: RequestInit = { method: opts.method ?? "GET", headers: headers() };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers = headers({ "Content-Type": "application/json" });
  }
  const response = await fetch(url, init);
  if (!response.ok) await fail(response);
  return (await response.json()) as T;
}

export interface Caller {
  name: string;
  role: Role;
}

/** The caller's role; a gateway without access control (404) lets everyone do everything. */
export async function fetchCaller(): Promise<Caller> {
  try {
    return await api<Caller>("/v1/caller");
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return { name: "", role: "ROLE_ADMIN" };
    throw e;
  }
}

export type Ability = "operate" | "administer";
const RANK: Record<string, number> = { ROLE_VIEWER: 1, ROLE_OPERATOR: 2, ROLE_ADMIN: 3, ROLE_INTERNAL: 3 };
export function allows(role: Role | undefined, ability: Ability): boolean {
  const rank = RANK[role ?? ""] ?? 0;
  return ability === "operate" ? rank >= 2 : rank >= 3;
}

export interface SseMessage {
  id: string | null;
  event: string;
  data: unknown;
}

/**
 * Follow a server-sent event stream with the bearer header (EventSource cannot send one).
 * Reconnects after a drop with `Last-Event-ID`; stops when `signal` aborts, when the server
 * ends the stream and `resume` is false, or after an `error` event (reported to onError).
 */
export function stream(
  path: string,
  onMessage: (m: SseMessage) => void,
  opts: { signal: AbortSignal; resume?: boolean; onError?: (e: Error) => void; onOpen?: () => void },
): void {
  let lastId: string | null = null;
  let delay = 500;
  const run = async (): Promise<void> => {
    while (!opts.signal.aborted) {
      let ended = false;
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastId !== null) h["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers: h, signal: opts.signal });
        if (!response.ok) await fail(response);
        opts.onOpen?.();
        delay = 500;
        const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut: number;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const message = parseBlock(block);
            if (message === null) continue;
            if (message.id !== null) lastId = message.id;
            if (message.event === "error") {
              const body = message.data as { error?: { message?: string } };
              throw new ApiError(500, "STREAM", body?.error?.message ?? "stream failed");
            }
            onMessage(message);
          }
        }
        ended = true;
      } catch (e) {
        if (opts.signal.aborted) return;
        if (e instanceof ApiError && e.status !== 503 && e.status !== 502) {
          opts.onError?.(e);
          return;
        }
      }
      if (ended && !opts.resume) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  void run();
}

function parseBlock(block: string): SseMessage | null {
  let id: string | null = null, event = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":") || line === "") continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return null;
  try {
    return { id, event, data: JSON.parse(data.join("\n")) };
  } catch {
    return null;
  }
}

// ---- formatting helpers shared by the pages

/** "12.5s" -> seconds. */
export function seconds(duration: string | undefined): number | null {
  if (!duration) return null;
  const n = parseFloat(duration);
  return Number.isFinite(n) ? n : null;
}

export function fmtDuration(s: number | null): string {
  if (s === null) return "";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtTime(ts: string | undefined): string {
  if (!ts) return "";
  const d = new Date(ts);
  return d.toLocaleString(undefined, { hour12: false });
}

export function between(start: string | undefined, end: string | undefined, now: number): number | null {
  if (!start) return null;
  const e = end ? Date.parse(end) : now;
  return Math.max(0, (e - Date.parse(start)) / 1000);
}

/** RUN_STATE_SUCCEEDED -> succeeded */
export function short(enumName: string | undefined): string {
  if (!enumName) return "";
  return enumName.replace(/^(RUN_STATE|STEP_STATE|ERROR_CATEGORY|RUN_TRIGGER|WORKER_STATE|EVENT_TYPE|ALERT_STATE|SCHEDULE_STATE|ACTION_OUTCOME)_/, "").toLowerCase().replace(/_/g, " ");
}
