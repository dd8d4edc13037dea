import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { allows, api, ApiError, between, fmtDuration, fmtTime, getToken, seconds, short, stream } from "../api";
import type { GetJobResponse, GetRunResponse, ListRunsResponse, Run, RunEvent, Step, StepLog, WatchRunResponseFrame } from "../gen/api";
import { navigate, useCaller } from "../App";
import { WorkflowGraph, type NodeStatus, type WorkflowDoc } from "../graph";
import { StateBadge, startedBy } from "./Runs";
import { Timeline, type Span } from "../timeline";
import { useNow } from "../hooks";

const TERMINAL_RUN = new Set(["RUN_STATE_SUCCEEDED", "RUN_STATE_FAILED", "RUN_STATE_CANCELLED"]);
const ENDED_STEP = new Set(["STEP_STATE_SUCCEEDED", "STEP_STATE_FAILED", "STEP_STATE_SKIPPED", "STEP_STATE_CANCELLED"]);
const LOG_CAP = 256 * 1024; // characters of live log kept per open panel
const BIG_RUN = 100; // steps: beyond this the run is refetched only for an open panel

/** Per node and attempt: when it was queued, started and ended (from the event history). */
type Attempts = Map<string, Map<number, { queued?: number; started?: number; ended?: number; state?: string }>>;

type Live = Map<string, { state: string; sequence: number }>;
/** A running foreach's item counts, from its STEP_PROGRESS events. */
type Progress = Map<string, { done: number; failed: number; total: number; sequence: number }>;

function applyEvent(ev: RunEvent, states: Live, attempts: Attempts, progress: Progress): void {
  const p = ev.step_progress;
  if (p?.node_id) {
    progress.set(p.node_id, { done: Number(p.items_done), failed: Number(p.items_failed), total: Number(p.items_total), sequence: Number(ev.sequence) });
    return;
  }
  const step = ev.step_state_changed;
  if (!step?.node_id) return;
  states.set(step.node_id, { state: step.state, sequence: Number(ev.sequence) });
  const t = ev.event_time ? Date.parse(ev.event_time) : Date.now();
  const byAttempt = attempts.get(step.node_id) ?? new Map();
  attempts.set(step.node_id, byAttempt);
  const a = byAttempt.get(step.attempt) ?? {};
  byAttempt.set(step.attempt, a);
  if (step.state === "STEP_STATE_QUEUED") a.queued ??= t;
  else if (step.state === "STEP_STATE_RUNNING") a.started ??= t;
  else if (ENDED_STEP.has(step.state) || step.state === "STEP_STATE_WAITING") {
    a.ended ??= t;
    a.state = step.state;
  }
}

function progressDetail(p: { done: number; failed: number; total: number }): string {
  return `${p.done}/${p.total} items${p.failed ? `, ${p.failed} failed` : ""}`;
}

function foreachDetail(step: Step | undefined): string {
  if (!step || step.node_type !== "logic.foreach") return step?.attempts && step.attempts > 1 ? `attempt ${step.attempts}` : "";
  const o = (step.outputs ?? {}) as { count?: number; failed_items?: unknown[]; done?: number };
  if (typeof o.count === "number") {
    const failed = Array.isArray(o.failed_items) ? o.failed_items.length : 0;
    const done = typeof o.done === "number" ? o.done : ENDED_STEP.has(step.state) ? o.count : 0;
    return `${done}/${o.count} items${failed ? `, ${failed} failed` : ""}`;
  }
  return "";
}

export function RunDetailPage({ runId, initialNode }: { runId: string; initialNode?: string }) {
  const caller = useCaller();
  const [run, setRun] = useState<Run | null>(null);
  const [doc, setDoc] = useState<WorkflowDoc | null>(null);
  const [error, setError] = useState("");
  const [liveStates, setLiveStates] = useState<Live>(new Map());
  const [liveProgress, setLiveProgress] = useState<Progress>(new Map());
  const [runState, setRunState] = useState<string>("");
  const attemptsRef = useRef<Attempts>(new Map());
  const [timelineTick, setTimelineTick] = useState(0);
  const [selected, setSelected] = useState<string | undefined>(initialNode);
  const [tab, setTab] = useState<"graph" | "timeline" | "compare">("graph");
  const [notice, setNotice] = useState("");
  const refreshTimer = useRef<number | undefined>();
  const stepCount = useRef(0);

  const load = useCallback(async () => {
    try {
      const r = (await api<GetRunResponse>(`/v1/runs/${encodeURIComponent(runId)}`)).run!;
      stepCount.current = r.steps.length;
      setRun(r);
      return r;
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      return null;
    }
  }, [runId]);

  // Refresh the full run (attempts, outputs) while events arrive: about once a second for a
  // small run. A big one (a 500-step run is ~0.5 MB, and parsing and drawing it holds up the
  // live colours, which come from events) only while a step's panel is open, and at its end.
  const selectedRef = useRef<string | undefined>(initialNode);
  const scheduleRefresh = useCallback((always = false) => {
    if (refreshTimer.current !== undefined) return;
    if (!always && stepCount.current > BIG_RUN && selectedRef.current === undefined) return;
    refreshTimer.current = window.setTimeout(() => {
      refreshTimer.current = undefined;
      void load();
    }, always ? 100 : Math.max(700, stepCount.current * 10));
  }, [load]);

  useEffect(() => {
    setRun(null);
    setDoc(null);
    setLiveStates(new Map());
    setLiveProgress(new Map());
    attemptsRef.current = new Map();
    let cancelled = false;
    void load().then(async (r) => {
      if (!r || cancelled) return;
      setRunState(r.state);
      try {
        const job = await api<GetJobResponse>(`/v1/jobs/${encodeURIComponent(r.job_id)}`, { query: { version: String(r.job_version) } });
        if (!cancelled) setDoc((job.job?.definition ?? {}) as WorkflowDoc);
      } catch {
        if (!cancelled) setDoc({ nodes: r.steps.map((s) => ({ id: s.node_id, type: s.node_type, data: { label: s.label } })), edges: [] });
      }
    });
    // State events from the start (history, then live): colours and the timeline.
    const ctrl = new AbortController();
    const states: Live = new Map();
    const progress: Progress = new Map();
    let flush: number | undefined;
    stream(
      `/v1/runs/${encodeURIComponent(runId)}/events?types=EVENT_TYPE_STEP_STATE_CHANGED&types=EVENT_TYPE_RUN_STATE_CHANGED&types=EVENT_TYPE_STEP_PROGRESS`,
      (m) => {
        const ev = (m.data as WatchRunResponseFrame).event;
        if (!ev) return;
        const changed = ev.run_state_changed;
        if (changed) setRunState(changed.state);
        if (changed && TERMINAL_RUN.has(changed.state)) void load();
        applyEvent(ev, states, attemptsRef.current, progress);
        // One redraw per frame for whatever arrived meanwhile (not a fixed delay).
        if (flush === undefined) {
          flush = window.requestAnimationFrame(() => {
            flush = undefined;
            setLiveStates(new Map(states));
            setLiveProgress(new Map(progress));
            setTimelineTick((t) => t + 1);
          });
        }
        // Progress changes no attempt or output: no refetch for it. A foreach's end brings
        // its final counts and its body's summaries: fetched whatever the run's size.
        const step = ev.step_state_changed;
        if (step && progress.has(step.node_id) && ENDED_STEP.has(step.state)) scheduleRefresh(true);
        else if (!ev.step_progress) scheduleRefresh();
      },
      { signal: ctrl.signal, resume: false, onError: (e) => setError(e.message) },
    );
    return () => {
      cancelled = true;
      ctrl.abort();
      if (flush !== undefined) window.cancelAnimationFrame(flush);
      window.clearTimeout(refreshTimer.current);
      refreshTimer.current = undefined;
    };
  }, [runId, load, scheduleRefresh]);

  // Opening a step's panel on a big run fetches the run (its attempts may be newer).
  useEffect(() => {
    selectedRef.current = selected;
    if (selected !== undefined && stepCount.current > BIG_RUN) scheduleRefresh(true);
  }, [selected, scheduleRefresh]);

  const steps = useMemo(() => new Map((run?.steps ?? []).map((s) => [s.node_id, s])), [run]);
  const inBody = useMemo(() => new Set((doc?.nodes ?? []).filter((n) => n.parentId).map((n) => n.id)), [doc]);
  const status = useMemo(() => {
    const m = new Map<string, NodeStatus>();
    for (const [id, s] of steps) {
      // A foreach body node's step holds its per-item summary ("succeeded for 5 of 5 items").
      const summary = inBody.has(id) ? (s.error_message || s.skip_reason).slice(0, 60) : "";
      m.set(id, { state: s.state, detail: summary || foreachDetail(s) });
    }
    // An event newer than the run we hold wins; the run's own state otherwise.
    const known = Number(run?.last_sequence ?? 0);
    for (const [id, st] of liveStates) {
      if (st.sequence > known || !steps.has(id)) m.set(id, { state: st.state, detail: foreachDetail(steps.get(id)) });
    }
    // A running foreach shows its latest item counts (its end brings the final ones).
    for (const [id, p] of liveProgress) {
      const st = m.get(id);
      if (st?.state === "STEP_STATE_RUNNING") m.set(id, { ...st, detail: progressDetail(p) });
    }
    return m;
  }, [steps, liveStates, liveProgress, run, inBody]);

  const spans: Span[] = useMemo(() => {
    void timelineTick;
    const out: Span[] = [];
    if (tab !== "timeline") return out; // built only while the timeline is shown
    for (const [node, byAttempt] of attemptsRef.current) {
      for (const [attempt, a] of byAttempt) {
        if (a.started === undefined && a.queued === undefined) continue;
        out.push({ node, label: `${steps.get(node)?.label || node}${attempt > 1 ? ` #${attempt}` : ""}`, queued: a.queued, started: a.started, ended: a.ended, state: a.state ?? status.get(node)?.state ?? "" });
      }
    }
    return out.sort((x, y) => (x.queued ?? x.started ?? 0) - (y.queued ?? y.started ?? 0));
  }, [timelineTick, steps, status, tab]);

  const act = async (what: string, path: string, body: unknown) => {
    setNotice("");
    try {
      const r = await api<{ run?: Run }>(path, { method: "POST", body });
      if (what === "retry" && r.run) {
        navigate(`/runs/${r.run.run_id}`);
        return;
      }
      setNotice(`${what}: done`);
      void load();
    } catch (e) {
      setNotice(`${what} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  if (error && !run) return <p role="alert" className="error">{error}</p>;
  if (!run) return <p className="loading">Loading run…</p>;
  const state = runState || run.state;
  const canOperate = allows(caller.role, "operate");
  const terminal = TERMINAL_RUN.has(state);
  const selectedStep = selected ? steps.get(selected) : undefined;

  return (
    <section aria-labelledby="run-title" className="run-detail">
      <div className="titlebar">
        <h1 id="run-title">
          <a href={`#/jobs/${run.job_id}`}>{run.job_name}</a> <span className="muted">v{run.job_version}</span> · run {run.run_id.slice(0, 8)}
        </h1>
        <StateBadge state={state} />
        <span className="spacer" />
        {canOperate && !terminal && (
          <button onClick={() => act("cancel", `/v1/runs/${run.run_id}:cancel`, { reason: "cancelled from the dashboard" })}>Cancel run</button>
        )}
        {canOperate && (state === "RUN_STATE_FAILED" || state === "RUN_STATE_CANCELLED") && (
          <button onClick={() => act("retry", `/v1/runs/${run.run_id}:retry`, { request_id: `retry-${run.run_id}-${Date.now()}` })}>
            Retry failed steps
          </button>
        )}
      </div>
      <dl className="facts">
        <dt>Trigger</dt>
        <dd>{short(run.trigger)}</dd>
        <dt>Started by</dt>
        <dd>{startedBy(run)}</dd>
        <dt>Created</dt>
        <dd>{fmtTime(run.create_time)}</dd>
        <dt>Duration</dt>
        <dd>{fmtDuration(between(run.start_time, run.end_time, Date.now()))}</dd>
        {run.retry_of_run_id && (
          <>
            <dt>Retry of</dt>
            <dd>
              <a href={`#/runs/${run.retry_of_run_id}`}>{run.retry_of_run_id.slice(0, 8)}</a>
            </dd>
          </>
        )}
        <dt>Parameters</dt>
        <dd>
          <code>{JSON.stringify(run.parameters ?? {})}</code>
        </dd>
      </dl>
      {run.error_message && <p className="error">{run.error_message}</p>}
      {notice && <p role="status">{notice}</p>}
      <div role="tablist" aria-label="Run views" className="tabs">
        {(["graph", "timeline", "compare"] as const).map((t) => (
          <button key={t} role="tab" aria-selected={tab === t} onClick={() => setTab(t)}>
            {t === "graph" ? "Graph" : t === "timeline" ? "Timeline" : "Compare with last success"}
          </button>
        ))}
      </div>
      <div className="split">
        <div className="main-pane">
          {tab === "graph" && doc && (
            <WorkflowGraph doc={doc} status={status} selected={selected} onSelect={setSelected} height={Math.max(360, window.innerHeight - 360)} />
          )}
          {tab === "timeline" && <Timeline spans={spans} onSelect={setSelected} />}
          {tab === "compare" && <Compare run={run} />}
        </div>
        {selected && (
          <StepPanel
            key={selected}
            run={run}
            nodeId={selected}
            step={selectedStep}
            liveState={status.get(selected)?.state}
            canOperate={canOperate}
            onClose={() => setSelected(undefined)}
            onDecided={() => void load()}
          />
        )}
      </div>
    </section>
  );
}

function StepPanel({
  run,
  nodeId,
  step,
  liveState,
  canOperate,
  onClose,
  onDecided,
}: {
  run: Run;
  nodeId: string;
  step: Step | undefined;
  liveState: string | undefined;
  canOperate: boolean;
  onClose: () => void;
  onDecided: () => void;
}) {
  const [log, setLog] = useState<{ stdout: string; stderr: string; truncated: boolean }>({ stdout: "", stderr: "", truncated: false });
  const [comment, setComment] = useState("");
  const [problem, setProblem] = useState("");
  const state = liveState ?? step?.state ?? "";
  const now = useNow(1000);

  // The step's log: history then live chunks, until the run ends.
  useEffect(() => {
    const ctrl = new AbortController();
    const buf = { stdout: "", stderr: "", truncated: false };
    let flush: number | undefined;
    stream(
      `/v1/runs/${encodeURIComponent(run.run_id)}/events?types=EVENT_TYPE_STEP_LOG&node_id=${encodeURIComponent(nodeId)}`,
      (m) => {
        const ev = (m.data as WatchRunResponseFrame).event;
        const chunk: StepLog | undefined = ev?.step_log;
        if (!chunk) return;
        const key = chunk.stream === "LOG_STREAM_STDERR" ? "stderr" : "stdout";
        buf[key] += chunk.text;
        if (buf[key].length > LOG_CAP) {
          buf[key] = buf[key].slice(-LOG_CAP);
          buf.truncated = true;
        }
        if (chunk.truncated) buf.truncated = true;
        if (flush === undefined) {
          flush = window.setTimeout(() => {
            flush = undefined;
            setLog({ ...buf });
          }, 100);
        }
      },
      { signal: ctrl.signal, resume: false },
    );
    return () => {
      ctrl.abort();
      window.clearTimeout(flush);
    };
  }, [run.run_id, nodeId]);

  const decide = async (decision: "APPROVAL_DECISION_APPROVE" | "APPROVAL_DECISION_REJECT") => {
    setProblem("");
    try {
      await api(`/v1/runs/${run.run_id}/steps/${encodeURIComponent(nodeId)}:decide`, { method: "POST", body: { decision, comment } });
      onDecided();
    } catch (e) {
      setProblem(e instanceof Error ? e.message : String(e));
    }
  };

  const stdout = log.stdout || step?.stdout || "";
  const stderr = log.stderr || step?.stderr || "";
  const waitingApproval = step?.node_type === "action.approval" && state === "STEP_STATE_WAITING";

  return (
    <aside className="panel" aria-label={`Step ${step?.label || nodeId}`}>
      <div className="titlebar">
        <h2>{step?.label || nodeId}</h2>
        <StateBadge state={state} />
        <span className="spacer" />
        <button className="link" onClick={onClose} aria-label="Close step panel">
          ✕
        </button>
      </div>
      {!step && <p className="muted">This node has no step in this run.</p>}
      {step && (
        <>
          <p className="muted">
            {step.node_type} · queue {step.queue || "—"}
            {step.child_run_id && (
              <>
                {" "}
                · <a href={`#/runs/${step.child_run_id}`}>child run</a>
              </>
            )}
          </p>
          {step.error_message && (
            <div className="error-box" role="group" aria-label="Error">
              <strong>{short(step.error_category)}</strong>: {step.error_message}
              {step.failure_handled && <span className="muted"> (handled)</span>}
            </div>
          )}
          {step.skip_reason && <p className="muted">skipped: {step.skip_reason}</p>}
          {waitingApproval && canOperate && (
            <div className="approval" role="group" aria-label="Decision">
              <label>
                Comment
                <textarea value={comment} onChange={(e) => setComment(e.target.value)} maxLength={1000} />
              </label>
              <button onClick={() => decide("APPROVAL_DECISION_APPROVE")}>Approve</button>
              <button className="danger" onClick={() => decide("APPROVAL_DECISION_REJECT")}>
                Reject
              </button>
              {problem && <p role="alert" className="error">{problem}</p>}
            </div>
          )}
          <h3>Attempts</h3>
          <table aria-label="Attempts" className="compact">
            <thead>
              <tr>
                <th>#</th>
                <th>Worker</th>
                <th>Queue</th>
                <th>Start</th>
                <th>Wall</th>
                <th>Exit</th>
                <th>CPU</th>
                <th>Max RSS</th>
                <th>Error</th>
              </tr>
            </thead>
            <tbody>
              {step.executions.map((x) => (
                <tr key={x.attempt}>
                  <td>{x.attempt}</td>
                  <td>{x.worker}</td>
                  <td>{x.queue}</td>
                  <td>{fmtTime(x.start_time)}</td>
                  <td>{fmtDuration(seconds(x.wall_time) ?? between(x.start_time, x.end_time, now))}</td>
                  <td>{x.exit_code ?? ""}</td>
                  <td>{fmtDuration((seconds(x.cpu_user_time) ?? 0) + (seconds(x.cpu_system_time) ?? 0))}</td>
                  <td>{x.max_rss_kib ? `${(Number(x.max_rss_kib) / 1024).toFixed(1)} MiB` : ""}</td>
                  <td>{x.error_category !== "ERROR_CATEGORY_UNSPECIFIED" ? `${short(x.error_category)}: ${x.error_message}` : ""}</td>
                </tr>
              ))}
              {step.executions.length === 0 && (
                <tr>
                  <td colSpan={9} className="muted">
                    No attempts.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
          <Inputs run={run} nodeId={nodeId} step={step} />
          <h3>Outputs</h3>
          <pre className="json" aria-label="Outputs">{JSON.stringify(step.outputs ?? step.output ?? null, null, 2)}</pre>
          <h3>
            Log {state === "STEP_STATE_RUNNING" && <span className="live on">● live</span>}
          </h3>
          {log.truncated && <p className="muted">Only the end of the output is shown.</p>}
          <h4>stdout</h4>
          <pre className="log" aria-label="stdout">{stdout}</pre>
          <FullOutput run={run} uri={step.stdout_uri} name="stdout" />
          <h4>stderr</h4>
          <pre className="log stderr" aria-label="stderr">{stderr}</pre>
          <FullOutput run={run} uri={step.stderr_uri} name="stderr" />
        </>
      )}
    </aside>
  );
}

/** What the latest attempt rendered (secrets masked); the definition until an attempt recorded it. */
function Inputs({ run, nodeId, step }: { run: Run; nodeId: string; step: Step }) {
  const [defined, setDefined] = useState<unknown>(null);
  const recorded = [...step.executions].reverse().find((x) => x.rendered_inputs !== undefined);
  const needDefinition = !recorded;
  useEffect(() => {
    if (!needDefinition) return;
    api<GetJobResponse>(`/v1/jobs/${encodeURIComponent(run.job_id)}`, { query: { version: String(run.job_version) } })
      .then((j) => {
        const nodes = ((j.job?.definition ?? {}) as WorkflowDoc).nodes ?? [];
        setDefined(nodes.find((n) => n.id === nodeId)?.data ?? null);
      })
      .catch(() => setDefined(null));
  }, [run.job_id, run.job_version, nodeId, needDefinition]);
  let shown: unknown = defined;
  if (recorded) shown = recorded.rendered_inputs;
  return (
    <>
      <h3>Inputs</h3>
      <p className="muted">
        {recorded
          ? `As attempt ${recorded.attempt} rendered them (secrets masked).`
          : "As defined (templates unrendered; an attempt records its rendered inputs when it ends)."}
      </p>
      <pre className="json" aria-label={recorded ? "Rendered inputs" : "Inputs as defined"}>
        {JSON.stringify(shown, null, 2)}
      </pre>
    </>
  );
}

/** A download link for a stream's full output when it was stored as an artifact. */
function FullOutput({ run, uri, name }: { run: Run; uri: string; name: string }) {
  const [state, setState] = useState<"idle" | "unavailable" | "error">("idle");
  if (!uri) return null;
  const download = async () => {
    try {
      // A stream kept beyond the inline cap is referenced as artifact://<artifact id>.
      const id = uri.startsWith("artifact://") ? uri.slice("artifact://".length) : "";
      if (!id) {
        setState("unavailable");
        return;
      }
      const href = `/v1/runs/${encodeURIComponent(run.run_id)}/artifacts/${encodeURIComponent(id)}/content`;
      const response = await fetch(href, { headers: { Authorization: `Bearer ${getToken() ?? ""}` } });
      if (!response.ok) throw new ApiError(response.status, "", response.statusText);
      const url = URL.createObjectURL(await response.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = `${run.run_id}-${name}.txt`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      setState(e instanceof ApiError && e.status === 404 ? "unavailable" : "error");
    }
  };
  return (
    <p>
      <button className="link" onClick={download}>
        Download full {name}
      </button>{" "}
      {state === "unavailable" && <span className="muted">Downloads are not available on this server; stored at {uri}</span>}
      {state === "error" && <span className="error">The download failed.</span>}
    </p>
  );
}

/** Parameters side by side with the job's last successful run; steps that changed. */
function Compare({ run }: { run: Run }) {
  const [other, setOther] = useState<Run | null | undefined>(undefined);
  useEffect(() => {
    api<ListRunsResponse>("/v1/runs", { query: { job_id: run.job_id, states: "RUN_STATE_SUCCEEDED", page_size: "2" } })
      .then(async (r) => {
        const prev = r.runs.find((x) => x.run_id !== run.run_id);
        if (!prev) return setOther(null);
        setOther((await api<GetRunResponse>(`/v1/runs/${prev.run_id}`)).run ?? null);
      })
      .catch(() => setOther(null));
  }, [run.job_id, run.run_id]);
  if (other === undefined) return <p className="loading">Loading…</p>;
  if (other === null) return <p className="muted">This job has no other successful run.</p>;
  const keys = [...new Set([...Object.keys(run.parameters ?? {}), ...Object.keys(other.parameters ?? {})])].sort();
  const theirs = new Map(other.steps.map((s) => [s.node_id, s]));
  const dur = (s: Step | undefined) => (s ? between(s.start_time, s.end_time, Date.now()) : null);
  const changed = run.steps.filter((s) => {
    const o = theirs.get(s.node_id);
    if (!o) return true;
    const a = dur(s), b = dur(o);
    const slower = a !== null && b !== null && Math.abs(a - b) > Math.max(1, 0.5 * b);
    return o.state !== s.state || JSON.stringify(o.outputs) !== JSON.stringify(s.outputs) || slower;
  });
  return (
    <div aria-label="Comparison">
      <p>
        Compared with <a href={`#/runs/${other.run_id}`}>run {other.run_id.slice(0, 8)}</a> ({fmtTime(other.create_time)})
      </p>
      <table aria-label="Parameters compared" className="compact">
        <thead>
          <tr>
            <th>Parameter</th>
            <th>This run</th>
            <th>Last success</th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => {
            const a = JSON.stringify((run.parameters ?? {})[k]), b = JSON.stringify((other.parameters ?? {})[k]);
            return (
              <tr key={k} className={a !== b ? "changed" : ""}>
                <td>{k}</td>
                <td>{a}</td>
                <td>{b}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <h3>Steps that changed ({changed.length})</h3>
      <table aria-label="Steps compared" className="compact">
        <thead>
          <tr>
            <th>Step</th>
            <th>State</th>
            <th>Duration</th>
            <th>Output</th>
          </tr>
        </thead>
        <tbody>
          {changed.slice(0, 500).map((s) => {
            const o = theirs.get(s.node_id);
            return (
              <tr key={s.node_id}>
                <td>{s.label || s.node_id}</td>
                <td>
                  {short(o?.state)} → {short(s.state)}
                </td>
                <td>
                  {fmtDuration(dur(o))} → {fmtDuration(dur(s))}
                </td>
                <td>{JSON.stringify(o?.outputs) === JSON.stringify(s.outputs) ? "same" : "changed"}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
