// Why a project, jobset, evaluation or enqueue request was not carried out. The CLI maps each kind to an exit
// code (usage → 2, not-found → 3, conflict and failed → 1); nothing has been written when one is thrown.
export type JobsetErrorKind = 'usage' | 'not-found' | 'conflict' | 'failed';

export class JobsetError extends Error {
  constructor(
    readonly kind: JobsetErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'JobsetError';
  }
}
