import { createContext, useContext, useEffect, useState, type FormEvent, type ReactNode } from "react";
import { ApiError, fetchCaller, getToken, setToken, setUnauthenticatedHandler, type Caller } from "./api";
import { RunsPage } from "./pages/Runs";
import { RunDetailPage } from "./pages/RunDetail";
import { JobsPage, JobDetailPage } from "./pages/Jobs";
import { SchedulesPage } from "./pages/Schedules";
import { QueuesPage } from "./pages/Queues";
import { AlertsPage } from "./pages/Alerts";
import { ErrorsPage } from "./pages/Errors";
import { KpisPage } from "./pages/Kpis";

export const CallerContext = createContext<Caller>({ name: "", role: "ROLE_VIEWER" });
export const useCaller = (): Caller => useContext(CallerContext);

/** The fragment route: `#/runs/abc?job=x` -> ["runs", "abc"], {job: "x"}. */
export function useRoute(): { parts: string[]; query: URLSearchParams } {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const on = () => setHash(window.location.hash);
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  const [path, search] = hash.replace(/^#\/?/, "").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(search ?? "") };
}

export function navigate(to: string): void {
  window.location.hash = to;
}

const NAV: [string, string][] = [
  ["runs", "Runs"],
  ["jobs", "Jobs"],
  ["errors", "Errors"],
  ["schedules", "Schedules"],
  ["queues", "Queues & workers"],
  ["alerts", "Alerts"],
  ["kpis", "KPIs"],
];

function SignIn({ onSignedIn, error }: { onSignedIn: (c: Caller) => void; error: string }) {
  const [token, setValue] = useState("");
  const [problem, setProblem] = useState(error);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!token.trim()) {
      setProblem("Enter a token.");
      return;
    }
    setBusy(true);
    setToken(token.trim());
    try {
      onSignedIn(await fetchCaller());
    } catch (err) {
      setToken(null);
      setProblem(err instanceof ApiError && err.status === 401 ? "This token is not valid." : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={submit} aria-label="Sign in">
        <h1>Conveyor</h1>
        <label>
          Access token
          <input type="password" value={token} autoComplete="off" onChange={(e) => setValue(e.target.value)} />
        </label>
        {problem && <p role="alert" className="error">{problem}</p>}
        <button type="submit" disabled={busy}>Sign in</button>
        <p className="hint">The token is kept in this tab's session storage only.</p>
      </form>
    </main>
  );
}

export function App() {
  const [caller, setCaller] = useState<Caller | null>(null);
  const [checking, setChecking] = useState(getToken() !== null);
  const [signInError, setSignInError] = useState("");
  const { parts, query } = useRoute();

  useEffect(() => {
    setUnauthenticatedHandler(() => {
      setToken(null);
      setCaller(null);
      setSignInError("Your session ended: sign in again.");
    });
    if (getToken() === null) return;
    fetchCaller()
      .then(setCaller)
      .catch(() => setToken(null))
      .finally(() => setChecking(false));
  }, []);

  if (checking) return <p className="loading">Loading…</p>;
  if (caller === null) return <SignIn onSignedIn={setCaller} error={signInError} />;

  const page = parts[0] ?? "runs";
  let body: ReactNode;
  if (page === "runs" && parts[1]) body = <RunDetailPage key={parts[1]} runId={parts[1]} initialNode={query.get("node") ?? undefined} />;
  else if (page === "jobs" && parts[1]) body = <JobDetailPage key={parts[1]} jobId={parts[1]} />;
  else if (page === "jobs") body = <JobsPage />;
  else if (page === "errors") body = <ErrorsPage />;
  else if (page === "schedules") body = <SchedulesPage />;
  else if (page === "queues") body = <QueuesPage />;
  else if (page === "alerts") body = <AlertsPage />;
  else if (page === "kpis") body = <KpisPage />;
  else body = <RunsPage query={query} />;

  return (
    <CallerContext.Provider value={caller}>
      <div className="shell">
        <header>
          <span className="brand">Conveyor</span>
          <nav aria-label="Main">
            {NAV.map(([id, label]) => (
              <a key={id} href={`#/${id}`} aria-current={page === id ? "page" : undefined}>
                {label}
              </a>
            ))}
          </nav>
          <span className="who" aria-label="Signed in as">
            {caller.name || "signed in"} · {caller.role.replace("ROLE_", "").toLowerCase()}
          </span>
          <button
            className="link"
            onClick={() => {
              setToken(null);
              setCaller(null);
              setSignInError("");
            }}
          >
            Sign out
          </button>
        </header>
        <main>{body}</main>
      </div>
    </CallerContext.Provider>
  );
}
