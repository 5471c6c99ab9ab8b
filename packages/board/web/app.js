// docket board: the pipeline as columns of cards, read from the board server (packages/board)
// and read again whenever it says something changed. Preact + htm (no build step), marked and
// DOMPurify for content, @tanstack/virtual-core so that a column of thousands stays fast.
import { html, render } from 'htm/preact'
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks'
import { marked } from 'marked'
import DOMPurify from 'dompurify'
import { Virtualizer, elementScroll, observeElementOffset, observeElementRect } from '@tanstack/virtual-core'

const CARD = 84

async function get(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } })
  const body = await res.json()
  if (!res.ok) throw new Error(body?.error?.message ?? `${path}: ${res.status}`)
  return body
}

/** The view lives in the URL, so that it can be shared. */
function readView() {
  const q = new URLSearchParams(location.search)
  return { type: q.get('type') ?? '', agent: q.get('agent') ?? '', label: q.get('label') ?? '', q: q.get('q') ?? '', item: q.get('item') ?? '', view: q.get('view') ?? 'board', since: q.get('since') ?? '' }
}
function writeView(view) {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(view)) if (v && !(k === 'view' && v === 'board')) q.set(k, v)
  history.replaceState(null, '', `${location.pathname}${q.size ? `?${q}` : ''}`)
}

function matches(item, view) {
  if (view.type && item.type !== view.type) return false
  if (view.agent && item.agent !== view.agent && item.claim?.agent !== view.agent) return false
  if (view.label && !(item.labels ?? []).includes(view.label)) return false
  if (view.q && !item.name.toLowerCase().includes(view.q.toLowerCase()) && item.id !== view.q) return false
  return true
}

function liveClaim(item) {
  return item.claim && Date.parse(item.claim.until) > Date.now() ? item.claim : undefined
}

function Card({ item, top, state, onOpen, onHover }) {
  const claim = liveClaim(item)
  const cls = ['card', item.blocked && 'blocked', item.frozen && 'frozen', claim && 'claimed', state].filter(Boolean).join(' ')
  return html`<div class=${cls} style=${`top:${top}px`} data-id=${item.id} data-testid="card" onClick=${() => onOpen(item.id)} onMouseEnter=${() => onHover(item.id)} onMouseLeave=${() => onHover('')}>
    <div class="title">#${item.id} ${item.name}</div>
    <div class="meta">${item.type}${item.priority !== undefined ? ` · p${item.priority}` : ''}${item.blocked ? ' · blocked' : ''}${item.frozen ? ' · frozen' : ''}${claim ? ` · ${claim.agent}${claim.provisional ? ' (provisional)' : ''}` : item.agent ? ` · @${item.agent}` : ''}</div>
    <div class="meta">${(item.labels ?? []).map((l) => html`<span class="chip">${l}</span>`)}${item.dependsOn.length ? ` waits on ${item.dependsOn.map((d) => `#${d}`).join(' ')}` : ''}</div>
  </div>`
}

/** One stage's cards, virtualised: only the cards in view are in the page. */
function Column({ stage, items, folded, onFold, highlight, selected, onOpen, onHover }) {
  const scroller = useRef(null)
  const [, redraw] = useState(0)
  const virtualizer = useMemo(
    () => new Virtualizer({ count: 0, getScrollElement: () => scroller.current, estimateSize: () => CARD, scrollToFn: elementScroll, observeElementRect, observeElementOffset, onChange: () => redraw((n) => n + 1), overscan: 6 }),
    [],
  )
  virtualizer.setOptions({ ...virtualizer.options, count: items.length })
  useLayoutEffect(() => virtualizer._didMount(), [])
  useLayoutEffect(() => virtualizer._willUpdate())
  if (folded) return html`<section class="column folded" data-stage=${stage} onClick=${onFold} title="show ${stage}"><h2>${stage} (${items.length})</h2></section>`
  return html`<section class="column" data-stage=${stage}>
    <h2 onClick=${onFold}><span>${stage}</span><span data-testid="count">${items.length}</span></h2>
    <div class="cards" ref=${scroller}>
      <div style=${`height:${virtualizer.getTotalSize()}px;position:relative`}>
        ${virtualizer.getVirtualItems().map((v) => {
          const item = items[v.index]
          const state = item.id === selected ? 'selected' : highlight.waitsOn.has(item.id) ? 'waits-on' : highlight.waitedBy.has(item.id) ? 'waited-by' : ''
          return html`<${Card} key=${item.id} item=${item} top=${v.start} state=${state} onOpen=${onOpen} onHover=${onHover} />`
        })}
      </div>
    </div>
  </section>`
}

function Markdown({ text }) {
  // No script (DOMPurify), and nothing that restyles the page or asks for input either.
  const safe = useMemo(() => DOMPurify.sanitize(marked.parse(text, { async: false }), { FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'option'], FORBID_ATTR: ['style'] }), [text])
  return html`<div class="markdown" dangerouslySetInnerHTML=${{ __html: safe }} />`
}

function Detail({ id, version, onClose }) {
  const [data, setData] = useState(null)
  const [error, setError] = useState('')
  useEffect(() => {
    get(`/api/items/${encodeURIComponent(id)}`).then(setData, (e) => setError(e.message))
  }, [id, version])
  if (error) return html`<aside><button class="close" onClick=${onClose}>close</button><p class="bad">${error}</p></aside>`
  if (!data) return html`<aside>loading #${id}…</aside>`
  const { item, history, content, aliases, audit } = data
  const claim = liveClaim(item)
  return html`<aside data-testid="detail">
    <button class="close" onClick=${onClose}>close</button>
    <h2>#${item.id} ${item.name}</h2>
    <p>${item.type} · <b data-testid="detail-stage">${item.stage}</b>${item.priority !== undefined ? ` · priority ${item.priority}` : ''}${item.parent ? ` · part of #${item.parent}` : ''}${item.blocked ? html` · <span class="bad">blocked: ${item.blocked.reason}</span>` : ''}${item.frozen ? ' · frozen' : ''}</p>
    ${claim ? html`<p>claimed by <b>${claim.agent}</b> since ${claim.since} until ${claim.until}${claim.provisional ? ' (provisional)' : ''}</p>` : ''}
    ${item.labels ? html`<p>${item.labels.map((l) => html`<span class="chip">${l}</span>`)}</p>` : ''}
    ${item.externalIds ? html`<p class="muted">also ${item.externalIds.join(', ')}</p>` : ''}
    ${aliases.map((a) => html`<p class="muted">was #${a.oldId} (${a.reason})</p>`)}
    ${Object.entries(content).map(([slot, value]) => html`<h3>${slot}</h3>${typeof value === 'string' ? (slot === 'body' ? html`<${Markdown} text=${value} />` : html`<pre>${value}</pre>`) : html`<p class="muted">${value.bytes < 0 ? 'not on this replica yet' : `${value.bytes} bytes, not text`}</p>`}`)}
    <h3>stage history</h3>
    <table data-testid="history"><tr><th>at</th><th>event</th><th>stage</th><th>by</th><th>counts</th></tr>
      ${history.map((h) => html`<tr><td>${h.at}</td><td>${h.event}</td><td>${h.stage}</td><td>${h.by}</td><td>${h.current ? 'current' : h.valid ? 'yes' : html`<span class="bad">no (${h.invalidReason})</span>`}</td></tr>`)}
    </table>
    <h3>audit</h3>
    <table>${audit.map((e) => html`<tr><td>${e.at}</td><td>${e.kind}</td><td class="muted">${JSON.stringify(e.data).slice(0, 160)}</td></tr>`)}</table>
  </aside>`
}

function Changes({ since, onSince, version }) {
  const [events, setEvents] = useState(null)
  useEffect(() => {
    get(`/api/changes${since ? `?since=${encodeURIComponent(since)}` : ''}`).then((r) => setEvents(r.events), () => {})
  }, [since, version])
  if (!events) return html`<div class="changes">loading…</div>`
  const pick = (ms) => (ms ? new Date(Date.now() - ms).toISOString() : '')
  return html`<div class="changes"><h2>what changed${since ? ` since ${since}` : ''} (newest first)</h2>
    <p>${[['last hour', 3600e3], ['last day', 864e5], ['last week', 6048e5], ['everything', 0]].map(([label, ms]) => html`<button onClick=${() => onSince(pick(ms))}>${label}</button> `)}</p>
    <ul>${events.map((e) => html`<li><span class="muted">${e.at}</span> ${e.kind}${e.itemId ? ` #${e.itemId}` : ''} <span class="muted">${JSON.stringify(e.data).slice(0, 120)}</span></li>`)}</ul></div>`
}

function App() {
  const [view, setViewState] = useState(readView)
  const [data, setData] = useState(null)
  const [status, setStatus] = useState(null)
  const [trouble, setTrouble] = useState('')
  const [version, setVersion] = useState(0)
  const latest = useRef(0)
  const [hover, setHover] = useState('')
  const [open, setOpen] = useState(() => new Set())
  const setView = (patch) =>
    setViewState((v) => {
      const next = { ...v, ...patch }
      writeView(next)
      return next
    })
  useEffect(() => {
    // Answers may come back out of order: only the newest request's is shown.
    const asked = ++latest.current
    get('/api/items').then(
      (d) => {
        if (asked !== latest.current) return
        setData(d)
        setTrouble('')
      },
      (e) => asked === latest.current && setTrouble(`cannot read the pipeline: ${e.message}`),
    )
    get('/api/status').then(setStatus, () => {})
  }, [version])
  useEffect(() => {
    // The server says when something changed; the page reads again (a burst of changes, once).
    const events = new EventSource('/api/events')
    let timer
    events.addEventListener('changed', () => {
      clearTimeout(timer)
      timer = setTimeout(() => setVersion((n) => n + 1), 80)
    })
    events.addEventListener('trouble', (e) => setTrouble(JSON.parse(e.data).message))
    return () => events.close()
  }, [])
  if (!data) return html`<p class=${trouble ? 'bad' : ''}>${trouble || 'loading the pipeline…'}</p>`
  const byId = new Map(data.items.map((i) => [i.id, i]))
  const focus = byId.get(hover || view.item)
  const highlight = { waitsOn: new Set(focus?.dependsOn ?? []), waitedBy: new Set(focus ? data.items.filter((i) => i.dependsOn.includes(focus.id)).map((i) => i.id) : []) }
  const shown = data.items.filter((i) => matches(i, view))
  const columns = data.stages.map((stage) => ({ stage, items: shown.filter((i) => i.stage === stage) })).filter((c) => c.items.length > 0 || !data.terminal.includes(c.stage))
  const types = [...new Set(data.items.map((i) => i.type))].sort()
  const agents = [...new Set(data.items.flatMap((i) => [i.agent, liveClaim(i)?.agent]).filter(Boolean))].sort()
  const labels = [...new Set(data.items.flatMap((i) => i.labels ?? []))].sort()
  const sync = status?.sync
  return html`<header>
      <h1>docket</h1>
      <span data-testid="total">${data.items.length} items</span>
      ${trouble ? html`<span class="bad" data-testid="trouble">${trouble}</span>` : ''}
      <span class="status">${sync?.configured ? html`<span class=${sync.connected ? 'ok' : 'bad'}>${sync.connected ? (sync.synced ? 'synced' : 'connected, catching up') : 'offline'}</span><span class="muted">last synced ${sync.lastSyncedAt ?? 'never'}</span>` : html`<span class="muted">no sync server</span>`}
        ${status?.doctor ? html`<span class=${status.doctor.ok ? 'ok' : 'bad'} data-testid="doctor">doctor: ${status.doctor.ok ? 'consistent' : 'problems'}${status.doctor.orphans.count ? `, ${status.doctor.orphans.count} orphans (${Object.entries(status.doctor.orphans.byKind).map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}</span>` : ''}</span>
      <input placeholder="search names" value=${view.q} onInput=${(e) => setView({ q: e.target.value })} data-testid="search" />
      <select value=${view.type} onChange=${(e) => setView({ type: e.target.value })}><option value="">any type</option>${types.map((t) => html`<option>${t}</option>`)}</select>
      <select value=${view.agent} onChange=${(e) => setView({ agent: e.target.value })}><option value="">any agent</option>${agents.map((a) => html`<option>${a}</option>`)}</select>
      <select value=${view.label} onChange=${(e) => setView({ label: e.target.value })}><option value="">any label</option>${labels.map((l) => html`<option>${l}</option>`)}</select>
      <button onClick=${() => setView({ view: view.view === 'changes' ? 'board' : 'changes' })}>${view.view === 'changes' ? 'board' : 'what changed'}</button>
    </header>
    ${view.view === 'changes'
      ? html`<${Changes} since=${view.since} version=${version} onSince=${(since) => setView({ since })} />`
      : html`<main>${columns.map(({ stage, items }) => {
          const folded = data.terminal.includes(stage) ? !open.has(stage) : open.has(stage)
          const onFold = () => setOpen((s) => { const n = new Set(s); n.has(stage) ? n.delete(stage) : n.add(stage); return n })
          return html`<${Column} key=${stage} stage=${stage} items=${items} folded=${folded} onFold=${onFold} highlight=${highlight} selected=${view.item} onOpen=${(id) => setView({ item: id })} onHover=${setHover} />`
        })}</main>`}
    ${view.item ? html`<${Detail} key=${view.item} id=${view.item} version=${version} onClose=${() => setView({ item: '' })} />` : ''}`
}

document.getElementById('board').textContent = ''
render(html`<${App} />`, document.getElementById('board'))
