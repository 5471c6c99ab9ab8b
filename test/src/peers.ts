import type { Store } from '@docket/core'
import { copyBlobs } from '@docket/core/testing'
import type { NetworkPeer } from './network.js'

/** A store as a network peer, named by its replica id; it settles by flushing (writes and re-anchorings). */
export function peerOf(store: Store): NetworkPeer {
  return {
    name: store.replicaId,
    applyUpdate: (update, source) => store.applyUpdate(update, source),
    encodeStateVector: () => store.encodeStateVector(),
    encodeStateAsUpdate: (sv) => store.encodeStateAsUpdate(sv),
    onUpdate: (listener) => store.onUpdate(listener),
    settle: () => store.flush(),
    readBlob: (sha256) => store.readBlob(sha256),
    pullBlobs: async (from) => void (await copyBlobs({ readBlob: async (sha) => from.readBlob?.(sha) }, store)),
  }
}

