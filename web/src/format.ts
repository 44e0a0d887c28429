// Numbers as an operator reads them.
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) (value /= 1024), unit++;
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

export function count(n: number | null | undefined): string {
  return n === null || n === undefined ? "—" : n.toLocaleString("en-US");
}

export function percent(share: number | null | undefined, digits = 0): string {
  return share === null || share === undefined ? "—" : `${(share * 100).toFixed(digits)}%`;
}

export function duration(seconds: number): string {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const hms = [Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60), s % 60]
    .map((x) => String(x).padStart(2, "0"))
    .join(":");
  return d ? `${d}d ${hms}` : hms;
}

/** An MFA from the API (`{"module", "function", "arity"}`, a list or a string) as `m:f/a`. */
export function mfa(value: any): string {
  if (!value) return "—";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return `${value[0]}:${value[1]}/${value[2]}`;
  if (value.module) return `${value.module}:${value.function}/${value.arity}`;
  return JSON.stringify(value);
}
