/**
 * Blob batches on the wire (docs/FORMAT.md): per blob its SHA-256 (32 raw bytes), its length
 * (4 bytes, big-endian) and its bytes. The one definition, for the sync client and `docket serve`.
 */
export interface Frame {
  sha256: string
  bytes: Uint8Array
}

export function encodeFrames(blobs: ReadonlyArray<Frame>): Uint8Array {
  const parts: Buffer[] = []
  for (const blob of blobs) {
    const head = Buffer.alloc(36)
    Buffer.from(blob.sha256, 'hex').copy(head, 0)
    head.writeUInt32BE(blob.bytes.byteLength, 32)
    parts.push(head, Buffer.from(blob.bytes.buffer, blob.bytes.byteOffset, blob.bytes.byteLength))
  }
  return new Uint8Array(Buffer.concat(parts))
}

/**
 * The whole frames at the start of a batch, and whether the batch is exactly such frames: a
 * truncated tail, or a frame longer than `maxBytes`, ends the reading with `complete: false`.
 */
export function readFrames(body: Uint8Array, maxBytes = Infinity): { frames: Frame[]; complete: boolean } {
  const buffer = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  const frames: Frame[] = []
  let at = 0
  while (at < buffer.byteLength) {
    if (at + 36 > buffer.byteLength) return { frames, complete: false }
    const length = buffer.readUInt32BE(at + 32)
    if (length > maxBytes || at + 36 + length > buffer.byteLength) return { frames, complete: false }
    frames.push({ sha256: buffer.subarray(at, at + 32).toString('hex'), bytes: new Uint8Array(buffer.subarray(at + 36, at + 36 + length)) })
    at += 36 + length
  }
  return { frames, complete: true }
}
