import { useEffect, useState } from "react";
import { api, fmtDuration, seconds } from "../api";
import type { GetKpisResponse, KpiBucket } from "../gen/api";

const WINDOWS: [string, string][] = [
  ["last hour", "3600s"],
  ["last 6 hours", "21600s"],
  ["last 24 hours", "86400s"],
  ["last 7 days", "604800s"],
  ["last 30 days", "2592000s"],
];

/** Bars over the buckets; one or two stacked series. */
function Bars({
  title,
  buckets,
  series,
  format,
}: {
  title: string;
  buckets: KpiBucket[];
  series: { name: string; value: (b: KpiBucket) => number; className: string }[];
  format: (v: number) => string;
}) {
  const W = 520, H = 130, PAD = 28;
  const totals = buckets.map((b) => series.reduce((sum, s) => sum + s.value(b), 0));
  const max = Math.max(...totals, 0);
  const bw = (W - PAD) / Math.max(1, buckets.length);
  const label = (b: KpiBucket) => new Date(b.start_time ?? "").toLocaleString(undefined, { hour12: false, month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" });
  return (
    <figure className="chart">
      <figcaption>
        {title} <span className="muted">(max {format(max)})</span>
        {series.length > 1 &&
          series.map((s) => (
            <span key={s.name} className="legend-item">
              <span className={`swatch ${s.className}`} /> {s.name}
            </span>
          ))}
      </figcaption>
      <svg width={W} height={H + 16} role="img" aria-label={`${title}: ${totals.map(format).join(", ")}`}>
        <line x1={PAD} y1={H} x2={W} y2={H} className="axis" />
        <text x={0} y={10} className="tick">
          {format(max)}
        </text>
        {buckets.map((b, i) => {
          let y = H;
          return (
            <g key={i}>
              {series.map((s) => {
                const v = s.value(b);
                const h = max > 0 ? (v / max) * (H - 12) : 0;
                y -= h;
                return (
                  <rect key={s.name} x={PAD + i * bw + 1} y={y} width={Math.max(1, bw - 2)} height={h} className={s.className}>
                    <title>
                      {label(b)} · {s.name}: {format(v)}
                    </title>
                  </rect>
                );
              })}
            </g>
          );
        })}
        {buckets.length > 0 && (
          <>
            <text x={PAD} y={H + 13} className="tick">
              {label(buckets[0])}
            </text>
            <text x={W} y={H + 13} className="tick" textAnchor="end">
              {label(buckets[buckets.length - 1])}
            </text>
          </>
        )}
      </svg>
    </figure>
  );
}

export function KpisPage() {
  const [windowArg, setWindowArg] = useState("86400s");
  const [k, setK] = useState<GetKpisResponse | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    setError("");
    api<GetKpisResponse>("/v1/kpis", { query: { window: windowArg } })
      .then(setK)
      .catch((e) => setError(String(e.message ?? e)));
  }, [windowArg]);
  const bucketS = seconds(k?.bucket) ?? 3600;
  const perHour = (n: number) => (n * 3600) / bucketS;
  const buckets = k?.buckets ?? [];
  const maxP95 = Math.max(...(k?.jobs ?? []).map((j) => seconds(j.p95_duration) ?? 0), 0.001);
  return (
    <section aria-labelledby="kpis-title">
      <div className="titlebar">
        <h1 id="kpis-title">KPIs</h1>
        <label>
          Window
          <select value={windowArg} onChange={(e) => setWindowArg(e.target.value)}>
            {WINDOWS.map(([label, v]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
          </select>
        </label>
        {k && <span className="muted">buckets of {fmtDuration(bucketS)} · {k.worker_slots} worker slots online{k.sampled ? " · sampled" : ""}</span>}
      </div>
      {error && <p role="alert" className="error">{error}</p>}
      {k && (
        <>
          <div className="charts">
            <Bars title="Runs started per hour" buckets={buckets} series={[{ name: "runs", value: (b) => perHour(Number(b.runs_started)), className: "c-run" }]} format={(v) => v.toFixed(v < 10 ? 1 : 0)} />
            <Bars
              title="Runs ended"
              buckets={buckets}
              series={[
                { name: "succeeded", value: (b) => Number(b.runs_succeeded), className: "c-ok" },
                { name: "failed", value: (b) => Number(b.runs_failed), className: "c-fail" },
              ]}
              format={(v) => String(Math.round(v))}
            />
            <Bars title="Queue wait (p95)" buckets={buckets} series={[{ name: "p95 wait", value: (b) => seconds(b.p95_queue_wait) ?? 0, className: "c-wait" }]} format={(v) => fmtDuration(v)} />
            <Bars title="Queue wait (mean)" buckets={buckets} series={[{ name: "mean wait", value: (b) => seconds(b.mean_queue_wait) ?? 0, className: "c-wait" }]} format={(v) => fmtDuration(v)} />
            <Bars title="Steps queued at bucket end" buckets={buckets} series={[{ name: "queued", value: (b) => Number(b.queued_steps), className: "c-run" }]} format={(v) => String(Math.round(v))} />
            <Bars title="Worker utilization" buckets={buckets} series={[{ name: "busy", value: (b) => b.worker_utilization * 100, className: "c-ok" }]} format={(v) => `${v.toFixed(v < 10 ? 1 : 0)}%`} />
          </div>
          <h2>Per job</h2>
          <table aria-label="Job KPIs">
            <thead>
              <tr>
                <th>Job</th>
                <th>Runs</th>
                <th>Success rate</th>
                <th>Mean duration</th>
                <th>p95 duration</th>
              </tr>
            </thead>
            <tbody>
              {k.jobs.map((j) => {
                const p95 = seconds(j.p95_duration) ?? 0;
                return (
                  <tr key={j.job_id}>
                    <td>
                      <a href={`#/jobs/${j.job_id}`}>{j.job_name}</a>
                    </td>
                    <td>{j.runs}</td>
                    <td>
                      {Number(j.succeeded) + Number(j.failed) ? `${(j.success_rate * 100).toFixed(0)}%` : "—"}{" "}
                      <span className="muted">
                        ({j.succeeded} ok, {j.failed} failed)
                      </span>
                    </td>
                    <td>{fmtDuration(seconds(j.mean_duration))}</td>
                    <td>
                      <span className="inline-bar" style={{ width: `${(p95 / maxP95) * 120}px` }} /> {fmtDuration(seconds(j.p95_duration))}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
