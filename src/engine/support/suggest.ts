/**
 * "Did you mean" for names typed at 3 am: the candidates within a small edit distance, closest first.
 * @param typed what was typed
 * @param candidates the names that exist
 * @param max how many to return @default 3
 */
export function closeMatches(typed: string, candidates: Iterable<string>, max = 3): string[] {
  // A third of the length, at least one and at most three edits: "vm1" must not suggest "db2".
  const limit = Math.min(3, Math.max(1, Math.floor(typed.length / 3)));
  const scored: { name: string; distance: number }[] = [];
  for (const name of new Set(candidates)) {
    if (Math.abs(name.length - typed.length) > limit) continue;
    const distance = editDistance(typed, name, limit);
    if (distance <= limit) scored.push({ name, distance });
  }
  return scored
    .sort((a, b) => a.distance - b.distance || a.name.localeCompare(b.name))
    .slice(0, max)
    .map((s) => s.name);
}

/** Levenshtein distance with adjacent transpositions, giving up above `limit` (returns limit + 1). */
function editDistance(a: string, b: string, limit: number): number {
  let previous2: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (previous2[j - 2] ?? 0) + 1);
      row.push(d);
      best = Math.min(best, d);
    }
    if (best > limit) return limit + 1;
    previous2 = previous;
    previous = row;
  }
  return previous[b.length] ?? limit + 1;
}
