// @sealtrail/client: the Sealtrail producer client for Node.js, its request context, and
// the Express and Next.js integrations.

export { Sealtrail } from './client.js';
export { SealtrailClosedError, SealtrailError, SealtrailRefusedError, SealtrailValidationError } from './errors.js';
export { getAuditContext, RequestAuditContext, runWithAuditContext, updateAuditContext } from './context.js';
export { auditErrorHandler, expressAudit, markAuditError, withAudit } from './middleware.js';
export { ALWAYS_REDACTED_HEADERS, DEFAULT_REDACTED_QUERY_PARAMS, DEFAULT_SKIPPED_PATHS } from './request-info.js';
export { normalizeIp, TrustedProxies } from './ip.js';
export { uuidv7 } from './uuid.js';
