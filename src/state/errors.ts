/** An object that kpx cannot use, named with the reason. It is skipped; every
 *  other object is still programmed. */
export class InvalidObjectError extends Error {
  override name = "InvalidObjectError";
  constructor(
    readonly kind: string,
    readonly namespace: string,
    readonly objectName: string,
    readonly reason: string,
  ) {
    super(`Cannot use ${kind} ${namespace ? `${namespace}/` : ""}${objectName}: ${reason}`);
  }
}

/** Two services claim the same destination (IP, protocol and port, or node port). */
export class ConflictError extends Error {
  override name = "ConflictError";
  constructor(readonly serviceId: string, readonly ownerId: string, readonly destination: string) {
    super(
      `Cannot program Service ${serviceId}: ${destination} is already used by Service ${ownerId}`,
    );
  }
}
