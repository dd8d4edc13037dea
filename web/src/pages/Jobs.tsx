import { useEffect, useMemo, useState, type FormEvent } from "react";
import { allows, api, fmtDuration, fmtTime, seconds, short } from "../api";
import type { GetJobResponse, GetJobStatsResponse, Job, ListJobsResponse, ListRunsResponse, Run, StartRunResponse } from "../gen/api";
import { navigate, useCaller } from "../App";
import { WorkflowGraph, type WorkflowDoc } from "../graph";
import { StateBadge } from "./Runs";

export function JobsPage() {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [tokens, setTokens] = useState<string[]>([""]);
  const [next, setNext] = useState("");
  const [prefix, setPrefix] = useState("");
  const [error, setError] = useState("");
  const [stats, setStats] = useState<Record<string, GetJobStatsResponse>>({});
  const [latest, setLatest] = useState<Record<string, Run[]>>({});

  useEffect(() => {
    api<ListJobsResponse>("/v1/jobs", { query: { page_size: "25", page_token: tokens[tokens.length - 1] || undefined, name_prefix: prefix || undefined } })
      .then((r) => {
        setJobs(r.jobs);
        setNext(r.next_page_token);
        setError("");
        // Latest runs and success rate of the jobs on this page (at most 25 at a time).
        for (const j of r.jobs) {
          api<GetJobStatsResponse>(`/v1/jobs/${j.job_id}/stats`)
            .then((s) => setStats((m) => ({ ...m, [j.job_id]: s })))
            .catch(() => undefined);
          api<ListRunsResponse>("/v1/runs", { query: { job_id: j.job_id, page_size: "5" } })
            .then((x) => setLatest((m) => ({ ...m, [j.job_id]: x.runs })))
            .catch(() => undefined);
        }
      })
      .catch((e) => setError(String(e.message ?? e)));
  }, [tokens, prefix]);

  return (
    <section aria-labelledby="jobs-title">
      <div className="titlebar">
        <h1 id="jobs-title">Jobs</h1>
      </div>
      <div className="filters" role="search">
        <label>
          Name starts with
          <input
            value={prefix}
            onChange={(e) => {
              setPrefix(e.target.value);
              setTokens([""]);
            }}
          />
        </label>
      </div>
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Jobs">
        <thead>
          <tr>
            <th>Job</th>
            <th>Version</th>
            <th>Latest runs</th>
            <th>Success rate (7 days)</th>
            <th>p95 duration</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => {
            const s = stats[j.job_id];
            return (
              <tr key={j.job_id}>
                <td>
                  <a href={`#/jobs/${j.job_id}`}>{j.name}</a>
                </td>
                <td>v{j.version}</td>
                <td className="latest">
                  {(latest[j.job_id] ?? []).map((r) => (
                    <a key={r.run_id} href={`#/runs/${r.run_id}`} aria-label={`Run ${r.run_id} ${short(r.state)}`}>
                      <StateBadge state={r.state} />
                    </a>
                  ))}
                </td>
                <td>{s ? (Number(s.total_runs) ? `${(s.success_rate * 100).toFixed(0)}% of ${s.total_runs}` : "no runs") : ""}</td>
                <td>{s ? fmtDuration(seconds(s.p95_duration)) : ""}</td>
                <td>{fmtTime(j.update_time)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div className="pager">
        <button disabled={tokens.length === 1} onClick={() => setTokens((t) => t.slice(0, -1))}>
          Previous
        </button>
        <button disabled={!next} onClick={() => setTokens((t) => [...t, next])}>
          Next
        </button>
      </div>
    </section>
  );
}

export function JobDetailPage({ jobId }: { jobId: string }) {
  const caller = useCaller();
  const [job, setJob] = useState<Job | null>(null);
  const [version, setVersion] = useState(0);
  const [error, setError] = useState("");
  useEffect(() => {
    api<GetJobResponse>(`/v1/jobs/${encodeURIComponent(jobId)}`, { query: { version: version ? String(version) : undefined } })
      .then((r) => setJob(r.job ?? null))
      .catch((e) => setError(String(e.message ?? e)));
  }, [jobId, version]);
  const [latestVersion, setLatestVersion] = useState(0);
  useEffect(() => {
    if (job && version === 0) setLatestVersion(job.version);
  }, [job, version]);
  const empty = useMemo(() => new Map(), []);
  if (error) return <p role="alert" className="error">{error}</p>;
  if (!job) return <p className="loading">Loading job…</p>;
  return (
    <section aria-labelledby="job-title">
      <div className="titlebar">
        <h1 id="job-title">{job.name}</h1>
        <label>
          Version
          <select value={String(version || job.version)} onChange={(e) => setVersion(Number(e.target.value))}>
            {Array.from({ length: Math.min(latestVersion || job.version, 200) }, (_, i) => (latestVersion || job.version) - i).map((v) => (
              <option key={v} value={v}>
                v{v}
              </option>
            ))}
          </select>
        </label>
        <a href={`#/runs?job=${job.job_id}`}>Runs of this job</a>
      </div>
      {job.description && <p className="description">{job.description}</p>}
      <div className="split">
        <div className="main-pane">
          <WorkflowGraph doc={(job.definition ?? {}) as WorkflowDoc} status={empty} height={420} />
        </div>
        {allows(caller.role, "operate") && <StartRunForm job={job} />}
      </div>
    </section>
  );
}

// ---- the start-run form, generated from the job's JSON Schema parameters

interface Prop {
  type?: string | string[];
  enum?: unknown[];
  default?: unknown;
  description?: string;
  title?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  items?: Prop;
}
interface Schema {
  properties?: Record<string, Prop>;
  required?: string[];
}

function kind(p: Prop): string {
  const t = Array.isArray(p.type) ? p.type.find((x) => x !== "null") : p.type;
  return t ?? (p.enum ? "enum" : "string");
}

function initial(p: Prop): string {
  if (p.default === undefined) return "";
  return typeof p.default === "string" ? p.default : JSON.stringify(p.default);
}

/** The value to send, or an error message to show beside the field. */
export function parseField(name: string, p: Prop, raw: string, required: boolean): { value?: unknown; error?: string } {
  const k = kind(p);
  if (raw === "" && k !== "boolean") return required ? { error: `${name} is required` } : {};
  if (p.enum) {
    const found = p.enum.find((e) => (typeof e === "string" ? e : JSON.stringify(e)) === raw);
    return found === undefined ? { error: `${name} must be one of ${p.enum.join(", ")}` } : { value: found };
  }
  if (k === "boolean") return { value: raw === "true" };
  if (k === "integer" || k === "number") {
    const n = Number(raw);
    if (!Number.isFinite(n) || (k === "integer" && !Number.isInteger(n))) return { error: `${name} must be ${k === "integer" ? "an integer" : "a number"}` };
    if (p.minimum !== undefined && n < p.minimum) return { error: `${name} must be at least ${p.minimum}` };
    if (p.maximum !== undefined && n > p.maximum) return { error: `${name} must be at most ${p.maximum}` };
    return { value: n };
  }
  if (k === "array" || k === "object") {
    try {
      const v = JSON.parse(raw);
      if (k === "array" ? !Array.isArray(v) : typeof v !== "object" || v === null || Array.isArray(v)) return { error: `${name} must be a JSON ${k}` };
      return { value: v };
    } catch {
      return { error: `${name} must be valid JSON` };
    }
  }
  if (p.minLength !== undefined && raw.length < p.minLength) return { error: `${name} must be at least ${p.minLength} characters` };
  if (p.maxLength !== undefined && raw.length > p.maxLength) return { error: `${name} must be at most ${p.maxLength} characters` };
  if (p.pattern) {
    try {
      if (!new RegExp(p.pattern, "u").test(raw)) return { error: `${name} must match ${p.pattern}` };
    } catch {
      /* a pattern JavaScript cannot compile: the server validates it */
    }
  }
  return { value: raw };
}

function StartRunForm({ job }: { job: Job }) {
  const schema = (job.parameters_schema ?? {}) as Schema;
  const props = Object.entries(schema.properties ?? {}).slice(0, 100);
  const required = new Set(schema.required ?? []);
  const [values, setValues] = useState<Record<string, string>>(() => Object.fromEntries(props.map(([n, p]) => [n, initial(p)])));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const params: Record<string, unknown> = {};
    const errs: Record<string, string> = {};
    for (const [name, p] of props) {
      const r = parseField(name, p, values[name] ?? "", required.has(name));
      if (r.error) errs[name] = r.error;
      else if (r.value !== undefined) params[name] = r.value;
    }
    setErrors(errs);
    if (Object.keys(errs).length) return;
    setBusy(true);
    setProblem("");
    try {
      const r = await api<StartRunResponse>(`/v1/jobs/${encodeURIComponent(job.job_id)}:run`, {
        method: "POST",
        body: { parameters: params, request_id: crypto.randomUUID?.() ?? `${Date.now()}-${Math.random()}`, job_version: job.version },
      });
      if (r.run) navigate(`/runs/${r.run.run_id}`);
    } catch (err) {
      setProblem(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="panel start-form" onSubmit={submit} aria-label="Start a run" noValidate>
      <h2>Start a run</h2>
      {props.length === 0 && <p className="muted">This job takes no parameters.</p>}
      {props.map(([name, p]) => {
        const k = kind(p);
        const id = `param-${name}`;
        const set = (v: string) => setValues((m) => ({ ...m, [name]: v }));
        const err = errors[name];
        return (
          <div key={name} className="field">
            <label htmlFor={id}>
              {p.title ?? name}
              {required.has(name) ? " *" : ""}
            </label>
            {p.enum ? (
              <select id={id} value={values[name]} onChange={(e) => set(e.target.value)} aria-invalid={Boolean(err)}>
                {!required.has(name) && <option value="">—</option>}
                {p.enum.map((v) => {
                  const s = typeof v === "string" ? v : JSON.stringify(v);
                  return (
                    <option key={s} value={s}>
                      {s}
                    </option>
                  );
                })}
              </select>
            ) : k === "boolean" ? (
              <input id={id} type="checkbox" checked={values[name] === "true"} onChange={(e) => set(String(e.target.checked))} />
            ) : k === "array" || k === "object" ? (
              <textarea id={id} value={values[name]} onChange={(e) => set(e.target.value)} aria-invalid={Boolean(err)} placeholder={k === "array" ? "[...]" : "{...}"} />
            ) : (
              <input
                id={id}
                type={k === "integer" || k === "number" ? "number" : "text"}
                step={k === "integer" ? 1 : "any"}
                value={values[name]}
                onChange={(e) => set(e.target.value)}
                aria-invalid={Boolean(err)}
                aria-describedby={err ? `${id}-error` : undefined}
              />
            )}
            {p.description && <small className="muted">{p.description}</small>}
            {err && (
              <small id={`${id}-error`} role="alert" className="error">
                {err}
              </small>
            )}
          </div>
        );
      })}
      {problem && <p role="alert" className="error">{problem}</p>}
      <button type="submit" disabled={busy}>
        Start run
      </button>
    </form>
  );
}
