import { useEffect, useMemo, useState } from "react";
import { api, between, fmtDuration, fmtTime, short, stream } from "../api";
import type { ListJobsResponse, ListRunsResponse, Run, RunState, WatchRunsResponse } from "../gen/api";
import { navigate } from "../App";
import { useNow } from "../hooks";

const STATES: RunState[] = [
  "RUN_STATE_PENDING",
  "RUN_STATE_RUNNING",
  "RUN_STATE_WAITING",
  "RUN_STATE_SUCCEEDED",
  "RUN_STATE_FAILED",
  "RUN_STATE_CANCELLED",
];
const TERMINAL = new Set(["RUN_STATE_SUCCEEDED", "RUN_STATE_FAILED", "RUN_STATE_CANCELLED"]);
const WINDOWS: [string, number][] = [
  ["any time", 0],
  ["last hour", 3600],
  ["last 24 hours", 86400],
  ["last 7 days", 7 * 86400],
];
const PAGE_SIZE = 50;
// Fields a run never changes: filled into rows that arrived live (a feed entry lacks them).
const FIXED = ["started_by", "job_version", "parameters", "priority", "parent_run_id", "retry_of_run_id"] as const;

/** `rows` with the fixed fields of `fresh` copied into the rows that lack them. */
function fillFixed(rows: Run[], fresh: Run[]): Run[] {
  const known = new Map(fresh.map((r) => [r.run_id, r]));
  let changed = false;
  const out = rows.map((r) => {
    const f = known.get(r.run_id);
    if (!f || r.job_version) return r;
    changed = true;
    const filled = { ...r } as Record<string, unknown>;
    for (const k of FIXED) filled[k] = f[k];
    return filled as unknown as Run;
  });
  return changed ? out : rows;
}

export function StateBadge({ state }: { state: string | undefined }) {
  const s = short(state);
  return <span className={`badge state-${s}`}>{s}</span>;
}

/** Who or what started a run, from what the run records. */
export function startedBy(run: Run): string {
  if (run.trigger === "RUN_TRIGGER_RETRY" && run.retry_of_run_id) return `retry of ${run.retry_of_run_id.slice(0, 8)}`;
  if (run.trigger === "RUN_TRIGGER_SUBWORKFLOW" && run.parent_run_id) return `run ${run.parent_run_id.slice(0, 8)}`;
  return run.started_by || short(run.trigger);
}

function setQuery(changes: Record<string, string>, query: URLSearchParams): void {
  const q = new URLSearchParams(query);
  for (const [k, v] of Object.entries(changes)) {
    if (v) q.set(k, v);
    else q.delete(k);
  }
  navigate(`/runs?${q.toString()}`);
}

export function RunsPage({ query }: { query: URLSearchParams }) {
  const job = query.get("job") ?? "";
  const state = query.get("state") ?? "";
  const since = Number(query.get("since") ?? "0");
  const [tokens, setTokens] = useState<string[]>([""]); // page tokens of the pages seen
  const [runs, setRuns] = useState<Run[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const [live, setLive] = useState(false);
  const [loading, setLoading] = useState(true);
  const [jobs, setJobs] = useState<{ id: string; name: string }[]>([]);
  const now = useNow(1000);
  const pageToken = tokens[tokens.length - 1];
  const firstPage = tokens.length === 1;

  useEffect(() => {
    api<ListJobsResponse>("/v1/jobs", { query: { page_size: "200" } })
      .then((r) => setJobs(r.jobs.map((j) => ({ id: j.job_id, name: j.name }))))
      .catch(() => setJobs([]));
  }, []);

  useEffect(() => setTokens([""]), [job, state, since]);

  useEffect(() => {
    let cancelled = false;
    setError("");
    setLoading(true);
    api<ListRunsResponse>("/v1/runs", {
      query: { page_size: String(PAGE_SIZE), page_token: pageToken || undefined, job_id: job || undefined, states: state || undefined },
    })
      .then((r) => {
        if (cancelled) return;
        setRuns(r.runs);
        setNext(r.next_page_token);
      })
      .catch((e) => !cancelled && setError(String(e.message ?? e)))
      .finally(() => !cancelled && setLoading(false));
    return () => {
      cancelled = true;
    };
  }, [job, state, pageToken]);

  // Live: every run change from now on, applied to the rows in place; new runs on page one.
  useEffect(() => {
    const ctrl = new AbortController();
    // Rows that arrived live lack who started them (and the version): one ListRuns, at most
    // about once a second while new runs arrive, fills them in. States stay the stream's.
    let fill: number | undefined;
    const scheduleFill = () => {
      if (fill !== undefined) return;
      fill = window.setTimeout(() => {
        fill = undefined;
        api<ListRunsResponse>("/v1/runs", { query: { page_size: String(PAGE_SIZE), job_id: job || undefined, states: state || undefined } })
          .then((r) => !ctrl.signal.aborted && setRuns((rows) => fillFixed(rows, r.runs)))
          .catch(() => undefined);
      }, 1000);
    };
    const params = new URLSearchParams({ from_now: "true" });
    if (job) params.append("job_ids", job);
    stream(
      `/v1/runs:watch?${params}`,
      (m) => {
        const change = m.data as WatchRunsResponse;
        const ev = change.event;
        if (!ev?.run_state_changed) return;
        const st = ev.run_state_changed.state;
        setRuns((rows) => {
          const at = rows.findIndex((r) => r.run_id === ev.run_id);
          if (at >= 0) {
            const row = { ...rows[at], state: st };
            if (st === "RUN_STATE_RUNNING" && !row.start_time) row.start_time = ev.event_time;
            if (TERMINAL.has(st) && !row.end_time) row.end_time = ev.event_time;
            const copy = rows.slice();
            copy[at] = row;
            return state && st !== state ? copy.filter((r) => r.run_id !== ev.run_id) : copy;
          }
          if (!firstPage || (state && st !== state)) return rows;
          const fresh = {
            run_id: ev.run_id,
            job_id: change.job_id,
            job_name: change.job_name,
            state: st,
            trigger: change.trigger,
            create_time: ev.event_time,
            start_time: st === "RUN_STATE_RUNNING" ? ev.event_time : undefined,
            steps: [],
          } as unknown as Run;
          scheduleFill();
          return [fresh, ...rows].slice(0, PAGE_SIZE);
        });
      },
      { signal: ctrl.signal, resume: true, onOpen: () => setLive(true), onError: (e) => setError(e.message) },
    );
    return () => {
      ctrl.abort();
      window.clearTimeout(fill);
      setLive(false);
    };
  }, [job, state, firstPage]);

  const cutoff = since ? now - since * 1000 : 0;
  const shown = useMemo(
    () => (cutoff ? runs.filter((r) => r.create_time && Date.parse(r.create_time) >= cutoff) : runs),
    [runs, cutoff],
  );
  const olderThanWindow = cutoff > 0 && runs.length > 0 && Date.parse(runs[runs.length - 1].create_time ?? "") < cutoff;

  return (
    <section aria-labelledby="runs-title">
      <div className="titlebar">
        <h1 id="runs-title">Runs</h1>
        <span className={live ? "live on" : "live"} role="status" aria-label="Live updates">
          {live ? "● live" : "○ connecting"}
        </span>
      </div>
      <div className="filters" role="search">
        <label>
          Job
          <select value={job} onChange={(e) => setQuery({ job: e.target.value }, query)}>
            <option value="">all jobs</option>
            {jobs.map((j) => (
              <option key={j.id} value={j.id}>
                {j.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          State
          <select value={state} onChange={(e) => setQuery({ state: e.target.value }, query)}>
            <option value="">all states</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {short(s)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Created
          <select value={String(since)} onChange={(e) => setQuery({ since: e.target.value === "0" ? "" : e.target.value }, query)}>
            {WINDOWS.map(([label, s]) => (
              <option key={s} value={String(s)}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Runs" aria-busy={loading}>
        <thead>
          <tr>
            <th>Run</th>
            <th>Job</th>
            <th>State</th>
            <th>Trigger</th>
            <th>Started by</th>
            <th>Start time</th>
            <th>Duration</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => (
            <tr key={r.run_id}>
              <td>
                <a href={`#/runs/${r.run_id}`} aria-label={`Run ${r.run_id}`}>
                  {r.run_id.slice(0, 8)}
                </a>
              </td>
              <td>
                <a href={`#/jobs/${r.job_id}`}>{r.job_name}</a>
                {r.job_version ? <span className="muted"> v{r.job_version}</span> : null}
              </td>
              <td>
                <StateBadge state={r.state} />
              </td>
              <td>{short(r.trigger)}</td>
              <td>{startedBy(r)}</td>
              <td>{fmtTime(r.start_time ?? r.create_time)}</td>
              <td>{fmtDuration(between(r.start_time, r.end_time, now))}</td>
            </tr>
          ))}
          {shown.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                No runs.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <div className="pager">
        <button disabled={firstPage} onClick={() => setTokens((t) => t.slice(0, -1))}>
          Newer
        </button>
        <span>page {tokens.length}</span>
        <button disabled={!next || olderThanWindow} onClick={() => setTokens((t) => [...t, next])}>
          Older
        </button>
      </div>
    </section>
  );
}
