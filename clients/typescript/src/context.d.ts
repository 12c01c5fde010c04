/** What `audit.record()` fills an event's request fields from. */
export interface AuditContext {
  userId?: string | number;
  tenantId?: string;
  ip?: string;
  userAgent?: string;
  requestId?: string;
}

/** The context the middleware builds; the actor and tenant are resolved on first use. */
export declare class RequestAuditContext implements AuditContext {
  constructor(parts?: {
    userId?: string | number;
    tenantId?: string;
    ip?: string;
    userAgent?: string;
    requestId?: string;
    resolveUserId?: () => unknown;
    resolveTenantId?: () => unknown;
  });
  userId: string | number | undefined;
  tenantId: string | undefined;
  ip: string | undefined;
  userAgent: string | undefined;
  requestId: string | undefined;
}

/** Runs `fn` with `context` as the audit context of everything it does, sync or async. */
export declare function runWithAuditContext<T>(context: AuditContext, fn: () => T): T;

/** The audit context of the code running now, or undefined outside any. */
export declare function getAuditContext(): AuditContext | undefined;

/** Changes the current audit context (e.g. the user after a login); false when there is none. */
export declare function updateAuditContext(changes: Partial<AuditContext>): boolean;

/** @internal The event's missing request fields from the context, as JSON members (`,"user_id":…`). */
export declare function contextMembers(event: Record<string, unknown>, context: AuditContext): string;
