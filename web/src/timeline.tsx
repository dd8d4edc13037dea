// A Gantt of attempts: queue wait (hatched) then run time (coloured by how it ended).
import { useState } from "react";
import { fmtDuration, short } from "./api";
import { useNow } from "./hooks";

export interface Span {
  node: string;
  label: string;
  queued?: number;
  started?: number;
  ended?: number;
  state: string;
}

const ROW = 22;
const LABEL_W = 200;
const WIDTH = 900;
const VISIBLE_ROWS = 40;

export function Timeline({ spans, onSelect }: { spans: Span[]; onSelect?: (node: string) => void }) {
  const now = useNow(1000);
  const [top, setTop] = useState(0);
  if (spans.length === 0) return <p className="muted">No attempts yet.</p>;
  const t0 = Math.min(...spans.map((s) => s.queued ?? s.started ?? now));
  const t1 = Math.max(...spans.map((s) => s.ended ?? now), t0 + 1);
  const scale = (WIDTH - LABEL_W - 10) / (t1 - t0);
  const x = (t: number) => LABEL_W + (t - t0) * scale;
  // Only the rows in view are drawn, so a 500-step run stays light.
  const first = Math.floor(top / ROW);
  const rows = spans.slice(first, first + VISIBLE_ROWS + 2);
  return (
    <div className="timeline" role="figure" aria-label="Timeline of attempts">
      <div className="legend">
        <span className="wait-swatch" /> queue wait <span className="run-swatch" /> running · total {fmtDuration((t1 - t0) / 1000)}
      </div>
      <div className="timeline-scroll" style={{ height: Math.min(spans.length, VISIBLE_ROWS) * ROW + 4 }} onScroll={(e) => setTop(e.currentTarget.scrollTop)}>
        <svg width={WIDTH} height={spans.length * ROW}>
          {rows.map((s, i) => {
            const y = (first + i) * ROW;
            const start = s.started ?? now;
            const end = s.ended ?? now;
            const wait = s.queued !== undefined ? Math.max(0, start - s.queued) : 0;
            return (
              <g key={`${s.label}-${first + i}`} onClick={() => onSelect?.(s.node)} className="tl-row">
                <text x={4} y={y + 15} className="tl-label">
                  {s.label.length > 28 ? `${s.label.slice(0, 27)}…` : s.label}
                </text>
                {s.queued !== undefined && (
                  <rect x={x(s.queued)} y={y + 4} width={Math.max(1, (Math.min(start, end) - s.queued) * scale)} height={ROW - 8} className="tl-wait">
                    <title>queue wait {fmtDuration(wait / 1000)}</title>
                  </rect>
                )}
                {s.started !== undefined && (
                  <rect x={x(s.started)} y={y + 4} width={Math.max(2, (end - s.started) * scale)} height={ROW - 8} className={`tl-run state-${short(s.state)}`}>
                    <title>
                      {s.label}: ran {fmtDuration((end - s.started) / 1000)} after waiting {fmtDuration(wait / 1000)} ({short(s.state) || "running"})
                    </title>
                  </rect>
                )}
              </g>
            );
          })}
        </svg>
      </div>
    </div>
  );
}
