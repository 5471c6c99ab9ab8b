import fc from 'fast-check'
import { pick } from './arbitraries.js'
import type { FakeNetwork } from './network.js'

/** What the network does between two local steps of a replica property. */
export type NetworkStep =
  | { kind: 'deliver'; index: number }
  | { kind: 'drop'; index: number }
  | { kind: 'duplicate'; index: number }
  | { kind: 'cut'; a: number; b: number }
  | { kind: 'heal' }

/** The network's steps for N replicas, weighted so delivery dominates: mix them with a property's own steps in `fc.oneof`. */
export function networkSteps(replicas: number): fc.WeightedArbitrary<NetworkStep>[] {
  const replica = fc.nat(replicas - 1)
  return [
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('deliver' as const), index: pick }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), index: pick }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), index: pick }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), a: replica, b: replica }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'heal' as const }) },
  ]
}

/** Runs one network step; `names` are the peers' names, indexed as the steps index replicas. */
export async function runNetworkStep(net: FakeNetwork, step: NetworkStep, names: readonly string[]): Promise<void> {
  switch (step.kind) {
    case 'deliver':
      await net.deliver(step.index)
      return
    case 'drop':
      net.drop(step.index)
      return
    case 'duplicate':
      net.duplicate(step.index)
      return
    case 'cut':
      if (step.a !== step.b) net.cut(names[step.a]!, names[step.b]!)
      return
    case 'heal':
      net.heal()
      return
  }
}
