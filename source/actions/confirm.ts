// How much confirmation an action needs, shared by script mode (cli/acting.ts) and the console
// (ui/state/acting.ts): y/N, or the target count typed for large and admin-wide actions.

/** Above this many targets a confirmation asks for the count to be typed. */
export const TYPED_CONFIRM_THRESHOLD = 100;

/** Whether confirming `count` targets (or an admin-wide action) needs the count typed rather than y/N. */
export function needsTypedConfirm(count: number, adminWide = false): boolean {
  return adminWide || count > TYPED_CONFIRM_THRESHOLD;
}
