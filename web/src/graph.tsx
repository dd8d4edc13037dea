// The workflow graph at the editor's positions, each node coloured by its step's state.
import { memo, useEffect, useMemo } from "react";
import { Background, Controls, Handle, MiniMap, Position, ReactFlow, useNodesState, type Edge, type Node, type NodeProps } from "@xyflow/react";
import "@xyflow/react/dist/base.css";
import { short } from "./api";

export interface DocNode {
  id: string;
  type?: string;
  position?: { x: number; y: number };
  parentId?: string;
  width?: number;
  height?: number;
  data?: Record<string, unknown>;
}
export interface DocEdge {
  id?: string;
  source: string;
  target: string;
  sourceHandle?: string | null;
}
export interface WorkflowDoc {
  nodes?: DocNode[];
  edges?: DocEdge[];
}

export interface NodeStatus {
  state?: string;
  detail?: string;
}

type StepNodeData = {
  label: string;
  kind: string;
  handles: string[];
  state: string;
  detail: string;
  selected: boolean;
  vertical: boolean;
};

const StepNode = memo(function StepNode({ data }: NodeProps<Node<StepNodeData>>) {
  const n = data.handles.length;
  const into = data.vertical ? Position.Top : Position.Left;
  const out = data.vertical ? Position.Bottom : Position.Right;
  const along = data.vertical ? "left" : "top";
  return (
    <div
      className={`flow-node state-${data.state || "none"}${data.selected ? " selected" : ""}`}
      role="button"
      aria-label={`Step ${data.label}: ${data.state || "not started"}`}
      data-state={data.state || "not started"}
    >
      <Handle type="target" position={into} />
      <div className="flow-label">{data.label}</div>
      <div className="flow-kind">
        {data.kind}
        {data.state ? ` · ${data.state}` : ""}
      </div>
      {data.detail && <div className="flow-detail">{data.detail}</div>}
      {data.handles.map((h, i) => (
        <Handle
          key={h}
          id={h === "" ? undefined : h}
          type="source"
          position={out}
          style={{ [along]: `${((i + 1) * 100) / (n + 1)}%` }}
        >
          {h && <span className="handle-label">{h}</span>}
        </Handle>
      ))}
    </div>
  );
});

const NODE_TYPES = { step: StepNode };
const X_GAP = 240;
const Y_GAP = 90;

/** Positions for nodes the editor left unplaced: layered by longest path from an entry. */
function autoLayout(nodes: DocNode[], edges: DocEdge[]): Map<string, { x: number; y: number }> {
  const incoming = new Map<string, string[]>();
  for (const e of edges) incoming.set(e.target, [...(incoming.get(e.target) ?? []), e.source]);
  const depth = new Map<string, number>();
  const visiting = new Set<string>();
  const depthOf = (id: string): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0; // a cycle: the translator rejects these, draw anyway
    visiting.add(id);
    const d = Math.max(-1, ...(incoming.get(id) ?? []).map(depthOf)) + 1;
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  const rows = new Map<number, number>();
  const out = new Map<string, { x: number; y: number }>();
  for (const n of nodes) {
    const d = depthOf(n.id);
    const row = rows.get(d) ?? 0;
    rows.set(d, row + 1);
    out.set(n.id, { x: d * X_GAP, y: row * Y_GAP });
  }
  return out;
}

export function WorkflowGraph({
  doc,
  status,
  selected,
  onSelect,
  height = 420,
}: {
  doc: WorkflowDoc;
  status: Map<string, NodeStatus>;
  selected?: string;
  onSelect?: (nodeId: string) => void;
  height?: number;
}) {
  const docNodes = useMemo(() => doc.nodes ?? [], [doc]);
  const docEdges = useMemo(() => doc.edges ?? [], [doc]);
  const layout = useMemo(() => {
    const unplaced = docNodes.some((n) => !n.position);
    return unplaced ? autoLayout(docNodes, docEdges) : new Map<string, { x: number; y: number }>();
  }, [docNodes, docEdges]);
  const handles = useMemo(() => {
    const m = new Map<string, Set<string>>();
    for (const e of docEdges) {
      const set = m.get(e.source) ?? new Set<string>();
      set.add(e.sourceHandle ?? "");
      m.set(e.source, set);
    }
    return m;
  }, [docEdges]);

  const vertical = useMemo(() => {
    const xs = docNodes.map((n) => n.position?.x ?? 0), ys = docNodes.map((n) => n.position?.y ?? 0);
    const spread = (v: number[]) => (v.length ? Math.max(...v) - Math.min(...v) : 0);
    return layout.size === 0 && spread(ys) > spread(xs);
  }, [docNodes, layout]);

  // A foreach holding body nodes is drawn as a box around them (its saved size, or one
  // that fits their positions, which are relative to it).
  const groupSize = useMemo(() => {
    const m = new Map<string, { width: number; height: number }>();
    for (const parent of docNodes) {
      const kids = docNodes.filter((c) => c.parentId === parent.id && c.position);
      if (kids.length === 0) continue;
      const width = parent.width ?? Math.max(...kids.map((c) => c.position!.x)) + 200;
      const height = parent.height ?? Math.max(...kids.map((c) => c.position!.y)) + 70;
      m.set(parent.id, { width, height });
    }
    return m;
  }, [docNodes]);

  const nodes: Node<StepNodeData>[] = useMemo(() => {
    const ids = new Set(docNodes.map((n) => n.id));
    // Parents first: React Flow places a child relative to its parent.
    const ordered = [...docNodes].sort((a, b) => Number(Boolean(a.parentId)) - Number(Boolean(b.parentId)));
    return ordered.map((n) => {
      const st = status.get(n.id);
      const label = (n.data?.label as string | undefined) || n.id;
      const parent = n.parentId && ids.has(n.parentId) && n.position ? n.parentId : undefined;
      return {
        id: n.id,
        type: "step",
        position: n.position ?? layout.get(n.id) ?? { x: 0, y: 0 },
        parentId: parent,
        style: groupSize.get(n.id),
        className: groupSize.has(n.id) ? "flow-group" : undefined,
        data: {
          label,
          kind: n.type ?? "",
          handles: [...(handles.get(n.id) ?? new Set([""]))].sort(),
          state: short(st?.state),
          detail: st?.detail ?? "",
          selected: n.id === selected,
          vertical,
        },
        draggable: false,
        connectable: false,
      };
    });
  }, [docNodes, layout, handles, status, selected, vertical, groupSize]);

  // React Flow keeps each node's measured size on the node objects it is given back: keep
  // them (and the objects of unchanged nodes, so a state change redraws only its node).
  const [shown, setShown, onNodesChange] = useNodesState<Node<StepNodeData>>([]);
  useEffect(() => {
    setShown((prev) => {
      const before = new Map(prev.map((n) => [n.id, n]));
      return nodes.map((n) => {
        const old = before.get(n.id);
        if (!old) return n;
        const same =
          old.position.x === n.position.x &&
          old.position.y === n.position.y &&
          old.parentId === n.parentId &&
          (Object.keys(n.data) as (keyof StepNodeData)[]).every((k) => String(old.data[k]) === String(n.data[k]));
        return same ? old : { ...n, measured: old.measured };
      });
    });
  }, [nodes, setShown]);

  const edges: Edge[] = useMemo(
    () =>
      docEdges.map((e, i) => ({
        id: e.id ?? `e${i}`,
        source: e.source,
        target: e.target,
        sourceHandle: e.sourceHandle || undefined,
        label: e.sourceHandle || undefined,
        className: e.sourceHandle === "error" ? "edge-error" : undefined,
      })),
    [docEdges],
  );

  return (
    <div className="graph" style={{ height }} aria-label="Workflow graph" role="region">
      <ReactFlow
        nodes={shown}
        onNodesChange={onNodesChange}
        edges={edges}
        nodeTypes={NODE_TYPES}
        onNodeClick={(_, n) => onSelect?.(n.id)}
        fitView
        minZoom={0.05}
        onlyRenderVisibleElements={nodes.length > 100}
        nodesDraggable={false}
        nodesConnectable={false}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <Controls showInteractive={false} />
        {nodes.length > 30 && <MiniMap pannable zoomable />}
      </ReactFlow>
    </div>
  );
}
