// The hydra-ops version (also reported by --version and recorded in the audit log).
export const VERSION = '0.1.0';
