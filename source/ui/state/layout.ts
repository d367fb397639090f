// Screen geometry shared by the reducer (page sizes) and the views (what fits).

export interface Size {
  columns: number;
  rows: number;
}

export const MIN_COLUMNS = 60;
export const MIN_ROWS = 15;

export function tooSmall(size: Size): boolean {
  return size.columns < MIN_COLUMNS || size.rows < MIN_ROWS;
}

/** Header strip height: three lines, two on short terminals (the per-system bars go). */
export function headerLines(size: Size): number {
  return size.rows >= 20 ? 3 : 2;
}

/** Lines for the active view between the crumb line and the footer. */
export function bodyLines(size: Size): number {
  return Math.max(1, size.rows - headerLines(size) - 2);
}

/** Table rows visible under the column header line. */
export function tableRows(size: Size): number {
  return Math.max(1, bodyLines(size) - 1);
}

/** Keeps `selected` inside [top, top + visible). */
export function scrollTop(top: number, selected: number, visible: number): number {
  if (selected < top) return selected;
  if (selected >= top + visible) return selected - visible + 1;
  return Math.max(0, top);
}

/** From this width the build detail is a pane beside the table it was opened from; below it, full-screen. */
export const DETAIL_BESIDE_COLUMNS = 140;

/** The widths of the table and the detail pane side by side (a one-column gap between), or null: full-screen. */
export function besideWidths(size: Size): {table: number; detail: number} | null {
  if (size.columns < DETAIL_BESIDE_COLUMNS) return null;
  const detail = Math.max(70, Math.floor(size.columns / 2));
  return {table: size.columns - detail - 1, detail};
}
