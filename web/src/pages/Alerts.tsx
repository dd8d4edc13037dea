import { useState } from "react";
import { api, fmtDuration, fmtTime, seconds, short } from "../api";
import type { ListAlertRulesResponse, ListAlertsResponse } from "../gen/api";
import { RefreshControls, useRefreshing } from "./Queues";

const loadAlerts = () => api<ListAlertsResponse>("/v1/alerts", { query: { page_size: "200" } });
const loadRules = () => api<ListAlertRulesResponse>("/v1/alertRules", { query: { page_size: "200" } });

export function AlertsPage() {
  const alerts = useRefreshing(loadAlerts, 5000);
  const rules = useRefreshing(loadRules, 30000);
  const [show, setShow] = useState<"all" | "firing">("all");
  const list = (alerts.data?.alerts ?? []).filter((a) => show === "all" || a.state === "ALERT_STATE_FIRING");
  return (
    <section aria-labelledby="alerts-title">
      <div className="titlebar">
        <h1 id="alerts-title">Alerts</h1>
        <span className="spacer" />
        <RefreshControls refresh={() => (alerts.refresh(), rules.refresh())} auto={alerts.auto} setAuto={alerts.setAuto} />
      </div>
      {(alerts.error || rules.error) && <p role="alert" className="error">{alerts.error || rules.error}</p>}
      <label>
        Show
        <select value={show} onChange={(e) => setShow(e.target.value as "all" | "firing")}>
          <option value="all">firing and resolved</option>
          <option value="firing">firing only</option>
        </select>
      </label>
      <table aria-label="Alerts">
        <thead>
          <tr>
            <th>State</th>
            <th>Rule</th>
            <th>Subject</th>
            <th>Message</th>
            <th>Fired</th>
            <th>Resolved</th>
            <th>Deliveries</th>
          </tr>
        </thead>
        <tbody>
          {list.map((a) => (
            <tr key={a.alert_id}>
              <td>
                <span className={`badge state-${short(a.state)}`}>{short(a.state)}</span>
              </td>
              <td>{a.rule_name}</td>
              <td>{a.subject}</td>
              <td>{a.message}</td>
              <td>{fmtTime(a.fire_time)}</td>
              <td>{fmtTime(a.resolve_time)}</td>
              <td title={a.last_delivery_error}>{a.deliveries}</td>
            </tr>
          ))}
          {list.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                No alerts.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <h2>Rules</h2>
      <table aria-label="Alert rules">
        <thead>
          <tr>
            <th>Name</th>
            <th>Kind</th>
            <th>Scope</th>
            <th>Threshold</th>
            <th>Max duration</th>
            <th>Enabled</th>
          </tr>
        </thead>
        <tbody>
          {(rules.data?.rules ?? []).map((r) => (
            <tr key={r.rule_id}>
              <td>{r.display_name}</td>
              <td>{r.kind.replace(/^ALERT_KIND_/, "").toLowerCase().replace(/_/g, " ")}</td>
              <td>{[r.job && `job ${r.job}`, r.queue && `queue ${r.queue}`, r.worker && `worker ${r.worker}`].filter(Boolean).join(", ") || "all"}</td>
              <td>{r.threshold}</td>
              <td>{fmtDuration(seconds(r.max_duration))}</td>
              <td>{r.enabled ? "yes" : "no"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
