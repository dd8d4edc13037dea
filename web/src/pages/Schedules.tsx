import { useEffect, useState } from "react";
import { allows, api, fmtDuration, fmtTime, seconds, short } from "../api";
import type { ListScheduleActionsResponse, ListSchedulesResponse, Schedule, ScheduleAction } from "../gen/api";
import { useCaller } from "../App";
import { RefreshControls, useRefreshing } from "./Queues";

const loadSchedules = () => api<ListSchedulesResponse>("/v1/schedules", { query: { page_size: "200" } });

function specText(s: Schedule): string {
  const spec = s.spec;
  if (spec?.cron) return `cron ${spec.cron.expression}${spec.time_zone ? ` (${spec.time_zone})` : ""}`;
  if (spec?.interval) return `every ${fmtDuration(seconds(spec.interval.every))}`;
  if (spec?.once) return `once at ${fmtTime(spec.once.run_time)}`;
  return "";
}

export function SchedulesPage() {
  const caller = useCaller();
  const list = useRefreshing(loadSchedules, 5000);
  const [open, setOpen] = useState<string>("");
  const [notes, setNotes] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");
  const act = async (s: Schedule, verb: "pause" | "resume" | "trigger") => {
    setMessage("");
    const body = verb === "trigger" ? { request_id: `trigger-${s.schedule_id}-${Date.now()}` } : { note: notes[s.schedule_id] ?? "" };
    try {
      await api(`/v1/schedules/${encodeURIComponent(s.schedule_id)}:${verb}`, { method: "POST", body });
      setMessage(`${s.schedule_id}: ${verb} done`);
      list.refresh();
    } catch (e) {
      setMessage(`${verb} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const admin = allows(caller.role, "administer");
  const operator = allows(caller.role, "operate");
  return (
    <section aria-labelledby="schedules-title">
      <div className="titlebar">
        <h1 id="schedules-title">Schedules</h1>
        <span className="spacer" />
        <RefreshControls {...list} />
      </div>
      {list.error && <p role="alert" className="error">{list.error}</p>}
      {message && <p role="status">{message}</p>}
      <table aria-label="Schedules">
        <thead>
          <tr>
            <th>Schedule</th>
            <th>Job</th>
            <th>When</th>
            <th>Next fire</th>
            <th>State</th>
            <th>Failures in a row</th>
            <th>Actions</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.schedules ?? []).map((s) => (
            <tr key={s.schedule_id}>
              <td>
                <button className="link" onClick={() => setOpen(open === s.schedule_id ? "" : s.schedule_id)} aria-expanded={open === s.schedule_id}>
                  {s.schedule_id}
                </button>
                {s.description && <div className="muted">{s.description}</div>}
              </td>
              <td>
                <a href={`#/jobs/${s.job_id}`}>{s.job_id}</a>
              </td>
              <td>{specText(s)}</td>
              <td>{s.paused ? "—" : fmtTime(s.next_run_time)}</td>
              <td>
                {s.paused ? "paused" : "active"}
                {s.note && <div className="muted">{s.note}</div>}
              </td>
              <td>{s.consecutive_failures}</td>
              <td className="actions">
                {admin && (
                  <input
                    aria-label={`Note for ${s.schedule_id}`}
                    placeholder="note"
                    value={notes[s.schedule_id] ?? ""}
                    maxLength={500}
                    onChange={(e) => setNotes((m) => ({ ...m, [s.schedule_id]: e.target.value }))}
                  />
                )}
                {admin && (s.paused ? <button onClick={() => act(s, "resume")}>Resume</button> : <button onClick={() => act(s, "pause")}>Pause</button>)}
                {operator && <button onClick={() => act(s, "trigger")}>Trigger now</button>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {open && <Actions scheduleId={open} />}
    </section>
  );
}

function Actions({ scheduleId }: { scheduleId: string }) {
  const [actions, setActions] = useState<ScheduleAction[]>([]);
  useEffect(() => {
    api<ListScheduleActionsResponse>(`/v1/schedules/${encodeURIComponent(scheduleId)}/actions`, { query: { page_size: "50" } })
      .then((r) => setActions(r.actions))
      .catch(() => setActions([]));
  }, [scheduleId]);
  return (
    <>
      <h2>Recent actions of {scheduleId}</h2>
      <table aria-label="Schedule actions" className="compact">
        <thead>
          <tr>
            <th>Nominal time</th>
            <th>Outcome</th>
            <th>Run</th>
            <th>Lag</th>
            <th>Message</th>
          </tr>
        </thead>
        <tbody>
          {actions.map((a, i) => (
            <tr key={`${a.nominal_time}-${i}`}>
              <td>
                {fmtTime(a.nominal_time)}
                {a.manual && <span className="muted"> (manual)</span>}
              </td>
              <td>{short(a.outcome)}</td>
              <td>{a.run_id && <a href={`#/runs/${a.run_id}`}>{a.run_id.slice(0, 8)}</a>} {short(a.run_state)}</td>
              <td>{fmtDuration(seconds(a.lag))}</td>
              <td>{a.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
