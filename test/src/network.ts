/**
 * A fake network between replicas, in the spirit of Yjs's own tests: every committed local
 * update becomes one message per peer; messages wait in flight until the test delivers,
 * drops, duplicates or reorders them; links can be cut (messages over a cut link are lost)
 * and healed. `syncAll` is the final anti-entropy round that any real sync protocol has.
 */
export interface NetworkPeer {
  readonly name: string
  applyUpdate(update: Uint8Array, source?: string): Promise<void>
  encodeStateVector(): Uint8Array
  encodeStateAsUpdate(stateVector?: Uint8Array): Uint8Array
  onUpdate(listener: (update: Uint8Array, info: { remote: boolean }) => void): () => void
  /** Finishes what applied updates started (docket re-anchors displaced items after a merge); `syncAll` awaits it every round. */
  settle?(): Promise<void>
  /**
   * Content travels beside updates (docket keeps it in blobs, by hash): after a delivery the
   * receiver takes what it lacks from the sender, as it would from a sync server.
   */
  readBlob?(sha256: string): Promise<Uint8Array | undefined>
  pullBlobs?(from: NetworkPeer): Promise<void>
}

export interface Message {
  from: string
  to: string
  update: Uint8Array
}

export class FakeNetwork {
  readonly inFlight: Message[] = []
  readonly #peers = new Map<string, NetworkPeer>()
  readonly #cut = new Set<string>()
  readonly #unsubscribe: Array<() => void> = []
  delivered = 0
  dropped = 0

  constructor(peers: readonly NetworkPeer[]) {
    for (const peer of peers) {
      this.#peers.set(peer.name, peer)
      this.#unsubscribe.push(
        peer.onUpdate((update, { remote }) => {
          if (!remote) this.#broadcast(peer.name, update)
        }),
      )
    }
  }

  get peers(): string[] {
    return [...this.#peers.keys()]
  }

  #broadcast(from: string, update: Uint8Array): void {
    for (const to of this.#peers.keys()) {
      if (to === from) continue
      if (this.isCut(from, to)) this.dropped++
      else this.inFlight.push({ from, to, update })
    }
  }

  static link(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`
  }

  isCut(a: string, b: string): boolean {
    return this.#cut.has(FakeNetwork.link(a, b))
  }

  /** Cuts the link: messages in flight over it and sent over it while cut are lost. */
  cut(a: string, b: string): void {
    this.#cut.add(FakeNetwork.link(a, b))
    for (let i = this.inFlight.length - 1; i >= 0; i--) {
      const m = this.inFlight[i]!
      if (FakeNetwork.link(m.from, m.to) === FakeNetwork.link(a, b)) {
        this.inFlight.splice(i, 1)
        this.dropped++
      }
    }
  }

  heal(a?: string, b?: string): void {
    if (a === undefined || b === undefined) this.#cut.clear()
    else this.#cut.delete(FakeNetwork.link(a, b))
  }

  /** Delivers the message at `index` (modulo the queue length): any order is a reordering. */
  async deliver(index: number): Promise<boolean> {
    if (this.inFlight.length === 0) return false
    const [message] = this.inFlight.splice(index % this.inFlight.length, 1)
    const to = this.#peers.get(message!.to)!
    await to.applyUpdate(message!.update, message!.from)
    await to.pullBlobs?.(this.#peers.get(message!.from)!)
    this.delivered++
    return true
  }

  drop(index: number): boolean {
    if (this.inFlight.length === 0) return false
    this.inFlight.splice(index % this.inFlight.length, 1)
    this.dropped++
    return true
  }

  duplicate(index: number): boolean {
    if (this.inFlight.length === 0) return false
    this.inFlight.push({ ...this.inFlight[index % this.inFlight.length]! })
    return true
  }

  async deliverAll(): Promise<void> {
    while (await this.deliver(0)) {
      // keep delivering: delivering can cause new messages (re-anchoring)
    }
  }

  /**
   * Heals every link and exchanges state vectors until every peer holds the same state and
   * nothing is left in flight, letting every peer settle after each round.
   */
  async syncAll(maxRounds = 20): Promise<void> {
    this.heal()
    for (let round = 0; round < maxRounds; round++) {
      await this.deliverAll()
      for (const a of this.#peers.values()) {
        for (const b of this.#peers.values()) {
          if (a === b) continue
          await b.applyUpdate(a.encodeStateAsUpdate(b.encodeStateVector()), a.name)
          await b.pullBlobs?.(a)
        }
      }
      for (const peer of this.#peers.values()) await peer.settle?.()
      if (this.inFlight.length === 0 && this.converged()) return
    }
    throw new Error(`the replicas did not converge after ${maxRounds} rounds of full sync`)
  }

  converged(): boolean {
    const vectors = [...this.#peers.values()].map((p) => Buffer.from(p.encodeStateVector()).toString('hex'))
    return vectors.every((v) => v === vectors[0])
  }

  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off()
  }
}
