import { useCallback, useEffect, useState } from "react";
import { api, fmtDuration, fmtTime, seconds, short } from "../api";
import type { GetQueueStatsResponse, ListWorkersResponse } from "../gen/api";
import { useNow } from "../hooks";

export function useRefreshing<T>(load: () => Promise<T>, everyMs: number): { data: T | null; error: string; refresh: () => void; auto: boolean; setAuto: (b: boolean) => void } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState("");
  const [auto, setAuto] = useState(true);
  const refresh = useCallback(() => {
    load()
      .then((d) => {
        setData(d);
        setError("");
      })
      .catch((e) => setError(String(e.message ?? e)));
  }, [load]);
  useEffect(refresh, [refresh]);
  useEffect(() => {
    if (!auto) return;
    const t = setInterval(() => document.visibilityState === "visible" && refresh(), everyMs);
    return () => clearInterval(t);
  }, [auto, refresh, everyMs]);
  return { data, error, refresh, auto, setAuto };
}

export function RefreshControls({ refresh, auto, setAuto }: { refresh: () => void; auto: boolean; setAuto: (b: boolean) => void }) {
  return (
    <span className="refresh">
      <button onClick={refresh}>Refresh</button>
      <label>
        <input type="checkbox" checked={auto} onChange={(e) => setAuto(e.target.checked)} /> every 5 s
      </label>
    </span>
  );
}

const loadQueues = () => api<GetQueueStatsResponse>("/v1/queues");
const loadWorkers = () => api<ListWorkersResponse>("/v1/workers", { query: { page_size: "500" } });

export function QueuesPage() {
  const queues = useRefreshing(loadQueues, 5000);
  const workers = useRefreshing(loadWorkers, 5000);
  const now = useNow(1000);
  const refresh = () => {
    queues.refresh();
    workers.refresh();
  };
  return (
    <section aria-labelledby="queues-title">
      <div className="titlebar">
        <h1 id="queues-title">Queues and workers</h1>
        <span className="spacer" />
        <RefreshControls refresh={refresh} auto={queues.auto} setAuto={(b) => (queues.setAuto(b), workers.setAuto(b))} />
      </div>
      {(queues.error || workers.error) && <p role="alert" className="error">{queues.error || workers.error}</p>}
      <h2>Queues {queues.data && <span className="muted">({queues.data.broker} broker)</span>}</h2>
      <table aria-label="Queues">
        <thead>
          <tr>
            <th>Queue</th>
            <th>Depth</th>
            <th>Oldest waiting</th>
            <th>Consumers</th>
            <th>In /s</th>
            <th>Out /s</th>
          </tr>
        </thead>
        <tbody>
          {(queues.data?.queues ?? []).map((q) => (
            <tr key={q.queue}>
              <td>{q.queue}</td>
              <td>{q.depth}</td>
              <td>{fmtDuration(seconds(q.oldest_age))}</td>
              <td>{q.consumers}</td>
              <td>{q.rate_in.toFixed(2)}</td>
              <td>{q.rate_out.toFixed(2)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {(queues.data?.notes ?? []).map((n) => (
        <p key={n} className="muted">
          {n}
        </p>
      ))}
      <h2>Workers</h2>
      <table aria-label="Workers">
        <thead>
          <tr>
            <th>Worker</th>
            <th>State</th>
            <th>Queues</th>
            <th>Concurrency</th>
            <th>Busy slots</th>
            <th>Heartbeat age</th>
            <th>Processed</th>
            <th>Running</th>
          </tr>
        </thead>
        <tbody>
          {(workers.data?.workers ?? []).map((w) => (
            <tr key={w.hostname}>
              <td>{w.hostname}</td>
              <td>
                <span className={`badge state-${short(w.state)}`}>{short(w.state)}</span>
              </td>
              <td>{w.queues.join(", ")}</td>
              <td>{w.concurrency || ""}</td>
              <td>
                {w.active_steps}
                {w.concurrency ? ` / ${w.concurrency}` : ""}
              </td>
              <td title={fmtTime(w.last_heartbeat_time)}>
                {w.last_heartbeat_time ? fmtDuration(Math.max(0, (now - Date.parse(w.last_heartbeat_time)) / 1000)) : ""}
              </td>
              <td>{w.processed}</td>
              <td>
                {w.running.length === 0 ? (
                  <span className="muted">idle</span>
                ) : (
                  <ul className="running" aria-label={`Running on ${w.hostname}`}>
                    {w.running.map((a) => (
                      <li key={`${a.run_id}/${a.node_id}/${a.attempt}`}>
                        <a href={`#/runs/${a.run_id}?node=${encodeURIComponent(a.node_id)}`}>
                          {a.node_id}
                          {a.attempt > 1 ? ` #${a.attempt}` : ""}
                        </a>{" "}
                        <span className="muted">
                          run {a.run_id.slice(0, 8)} · {fmtDuration(a.start_time ? Math.max(0, (now - Date.parse(a.start_time)) / 1000) : null)}
                        </span>
                      </li>
                    ))}
                  </ul>
                )}
              </td>
            </tr>
          ))}
          {workers.data && workers.data.workers.length === 0 && (
            <tr>
              <td colSpan={8} className="muted">
                No workers seen yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}
