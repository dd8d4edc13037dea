import { useEffect, useState } from "react";
import { api, fmtTime, short } from "../api";
import type { GetRunResponse, ListRunsResponse, Run } from "../gen/api";

const RUNS = 50; // failed runs examined, newest first
const DAYS = 14;

interface Group {
  key: string;
  job: string;
  jobId: string;
  node: string;
  category: string;
  count: number;
  perDay: number[];
  latest: { runId: string; time: string; stderr: string; message: string };
}

function tail(text: string, lines: number): string {
  return text.split("\n").slice(-lines).join("\n");
}

export function ErrorsPage() {
  const [groups, setGroups] = useState<Group[] | null>(null);
  const [error, setError] = useState("");
  const [examined, setExamined] = useState(0);

  useEffect(() => {
    let cancelled = false;
    (async () => {
      const list = await api<ListRunsResponse>("/v1/runs", { query: { states: "RUN_STATE_FAILED", page_size: String(RUNS) } });
      const runs: Run[] = [];
      // A few at a time: the gateway serves other pages too.
      for (let i = 0; i < list.runs.length; i += 5) {
        const batch = await Promise.all(list.runs.slice(i, i + 5).map((r) => api<GetRunResponse>(`/v1/runs/${r.run_id}`).then((x) => x.run!)));
        runs.push(...batch);
        if (cancelled) return;
      }
      const today = Math.floor(Date.now() / 86400000);
      const byKey = new Map<string, Group>();
      for (const run of runs) {
        for (const step of run.steps) {
          if (step.state !== "STEP_STATE_FAILED") continue;
          const key = `${run.job_id}/${step.node_id}/${step.error_category}`;
          const time = step.end_time ?? run.end_time ?? run.create_time ?? "";
          let g = byKey.get(key);
          if (!g) {
            g = { key, job: run.job_name, jobId: run.job_id, node: step.label || step.node_id, category: step.error_category, count: 0, perDay: new Array(DAYS).fill(0), latest: { runId: run.run_id, time, stderr: tail(step.stderr, 20), message: step.error_message } };
            byKey.set(key, g);
          }
          g.count += 1;
          const day = today - Math.floor(Date.parse(time) / 86400000);
          if (day >= 0 && day < DAYS) g.perDay[DAYS - 1 - day] += 1;
          if (time > g.latest.time) g.latest = { runId: run.run_id, time, stderr: tail(step.stderr, 20), message: step.error_message };
        }
      }
      if (!cancelled) {
        setExamined(runs.length);
        setGroups([...byKey.values()].sort((a, b) => b.count - a.count));
      }
    })().catch((e) => !cancelled && setError(String(e.message ?? e)));
    return () => {
      cancelled = true;
    };
  }, []);

  return (
    <section aria-labelledby="errors-title">
      <div className="titlebar">
        <h1 id="errors-title">Error investigation</h1>
      </div>
      <p className="muted">Failed steps of the latest {RUNS} failed runs ({examined} examined), grouped by job, node and error category; bars are the last {DAYS} days.</p>
      {error && <p role="alert" className="error">{error}</p>}
      {groups === null && !error && <p className="loading">Loading…</p>}
      {groups?.length === 0 && <p className="muted">No failed steps.</p>}
      {groups?.map((g) => (
        <article key={g.key} className="error-group" aria-label={`${g.job} ${g.node} ${short(g.category)}`}>
          <header>
            <strong>
              <a href={`#/jobs/${g.jobId}`}>{g.job}</a> · {g.node}
            </strong>{" "}
            <span className="badge state-failed">{short(g.category)}</span> <span>{g.count}×</span>
            <svg className="spark" width={DAYS * 6} height={20} role="img" aria-label={`failures per day: ${g.perDay.join(", ")}`}>
              {g.perDay.map((n, i) => {
                const max = Math.max(...g.perDay, 1);
                const h = (n / max) * 18;
                return <rect key={i} x={i * 6} y={20 - h} width={5} height={h} />;
              })}
            </svg>
            <a href={`#/runs/${g.latest.runId}`}>latest: run {g.latest.runId.slice(0, 8)}</a> <span className="muted">{fmtTime(g.latest.time)}</span>
          </header>
          <p>{g.latest.message}</p>
          {g.latest.stderr && <pre className="log stderr">{g.latest.stderr}</pre>}
        </article>
      ))}
    </section>
  );
}
