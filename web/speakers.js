// Who spoke each utterance, as every view shows it. The feed gives each utterance a `speaker`
// ({id, role, similarity}; null when attribution is off). Staff can correct the view of a
// session after the fact: "S1 is the counselor" (the other voice of a two-person session is then
// the client) and "swap S1/S2" when the two were given the wrong way round. Corrections belong to
// the viewed session (kept here by session id, so a recording rebuilt on seek keeps them) and
// change what is shown and exported, never the feed or the recording.

const ROLES = {
  counselor: { ko: "상담사", en: "Counselor" },
  client: { ko: "내담자", en: "Client" },
};
const COLOURS = ["#3b4a6b", "#1b7f79", "#8a5a00", "#7a3e8f", "#4d6b2f", "#8f3b3b"]; // strip colours per speaker

const edits = new Map(); // session id -> {counselor: "S1" | null, swap: bool}

export function editsOf(session) {
  if (!session) return { counselor: null, swap: false };
  if (!edits.has(session.id)) edits.set(session.id, { counselor: null, swap: false });
  return edits.get(session.id);
}

/**
 * The speaker ids that spoke in this session, in order of their number (S1, S2, ...), and the
 * role the feed gave each; worked out once per new message, since every view asks per utterance.
 */
function known(session) {
  if (session.speakersSeen?.seq !== session.lastSeq) {
    const roles = new Map();
    for (const u of session.utterances.values()) {
      const id = u.speaker?.id;
      if (typeof id === "string" && !roles.has(id)) roles.set(id, typeof u.speaker.role === "string" && u.speaker.role ? u.speaker.role : null);
    }
    const ids = [...roles.keys()].sort((a, b) => (Number(a.slice(1)) || 0) - (Number(b.slice(1)) || 0) || a.localeCompare(b));
    session.speakersSeen = { seq: session.lastSeq, ids, roles };
  }
  return session.speakersSeen;
}

export function speakersIn(session) {
  return session ? known(session).ids : [];
}

/**
 * The speaker of utterance `u` as shown: {id, role, similarity} after this session's corrections,
 * or null when the feed has none. `swap` exchanges S1 and S2 (id and role); "S1 is the counselor"
 * makes S1 the counselor and, in a two-voice session, the other one the client.
 */
export function shownSpeaker(session, u) {
  const sp = u?.speaker;
  if (!sp || typeof sp.id !== "string") return null;
  const e = editsOf(session);
  let id = sp.id;
  let role = typeof sp.role === "string" && sp.role ? sp.role : null;
  if (e.swap && (id === "S1" || id === "S2")) {
    const other = id === "S1" ? "S2" : "S1";
    id = other;
    role = known(session).roles.get(other) ?? null;
  }
  if (e.counselor) {
    const ids = speakersIn(session);
    role = id === e.counselor ? "counselor" : ids.length === 2 ? "client" : role === "counselor" ? null : role;
  }
  return { id, role, similarity: typeof sp.similarity === "number" ? sp.similarity : null };
}

/** "S1 · 상담사 Counselor", "S2 · dr_kim" or "S1" (plain text: callers escape or use textContent). */
export function speakerName(sp) {
  if (!sp) return "";
  if (!sp.role) return sp.id;
  const named = ROLES[sp.role];
  return `${sp.id} · ${named ? `${named.ko} ${named.en}` : sp.role}`;
}

/** A subtitle voice name: "Counselor", "Client", an enrolled name, or the id. */
export function voiceName(sp) {
  if (!sp) return "";
  return sp.role ? ROLES[sp.role]?.en ?? sp.role : sp.id;
}

export function speakerColour(id) {
  const n = Number(String(id).slice(1));
  return COLOURS[(Number.isInteger(n) && n > 0 ? n - 1 : 0) % COLOURS.length];
}
