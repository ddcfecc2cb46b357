// The rrweb-format recorder injected into a recorded page (agent/browser). It buffers
// rrweb events in window.__flareRRBuf, which the agent drains over CDP before and after
// every action (so nothing depends on event delivery order): a Meta event (type 4) and a
// FullSnapshot (type 2) when the document is ready, a new FullSnapshot (throttled)
// after the DOM or a form value changes, and IncrementalSnapshot (type 3) events for
// scrolls (source 3) and clicks (source 2, type 2). Scripts and inline event handlers
// are never recorded; password values are masked.
(() => {
  if (window.__flareRRBuf || location.href === 'about:blank') return; // nothing to see before the first page
  const buf = (window.__flareRRBuf = []);
  const emit = (type, data) => { if (buf.length < 5000) buf.push(JSON.stringify({ type, data, timestamp: Date.now() })); };
  let nextId = 1;
  const ids = new WeakMap();
  const idOf = (n) => { let i = ids.get(n); if (!i) { i = nextId++; ids.set(n, i); } return i; };
  const kids = (n) => Array.from(n.childNodes).map(ser).filter(Boolean);
  function ser(n) {
    switch (n.nodeType) {
      case 9: return { type: 0, childNodes: kids(n), id: idOf(n) };
      case 10: return { type: 1, name: n.name, publicId: n.publicId, systemId: n.systemId, id: idOf(n) };
      case 3: {
        const o = { type: 3, textContent: n.textContent, id: idOf(n) };
        if (n.parentNode && n.parentNode.nodeName === 'STYLE') o.isStyle = true;
        return o;
      }
      case 8: return { type: 5, textContent: n.textContent, id: idOf(n) };
      case 1: {
        const tag = n.tagName.toLowerCase();
        if (tag === 'script' || tag === 'noscript') return null;
        const attributes = {};
        for (const a of Array.from(n.attributes)) {
          if (!a.name.toLowerCase().startsWith('on')) attributes[a.name] = a.value;
        }
        if (tag === 'link' && /stylesheet/i.test(n.rel) && n.sheet) {
          try { attributes._cssText = Array.from(n.sheet.cssRules).map((r) => r.cssText).join('\n'); } catch (e) { /* cross-origin */ }
        }
        if (tag === 'input' || tag === 'textarea' || tag === 'select') {
          attributes.value = n.type === 'password' ? '*'.repeat(n.value.length) : n.value;
          if (n.checked) attributes.checked = true;
        }
        const o = { type: 2, tagName: tag, attributes, childNodes: kids(n), id: idOf(n) };
        if (n.namespaceURI === 'http://www.w3.org/2000/svg') o.isSVG = true;
        return o;
      }
    }
    return null;
  }
  const full = () => emit(2, { node: ser(document), initialOffset: { left: window.scrollX, top: window.scrollY } });
  let pending = null;
  const later = () => { if (!pending) pending = setTimeout(() => { pending = null; full(); }, 150); };
  // Drain: a pending snapshot is taken now, and the buffer handed over.
  window.__flareRRDrain = () => {
    if (pending) { clearTimeout(pending); pending = null; full(); }
    return buf.splice(0, buf.length);
  };
  const start = () => {
    emit(4, { href: location.href, width: window.innerWidth, height: window.innerHeight });
    full();
    new MutationObserver(later).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
    document.addEventListener('input', later, true);
    document.addEventListener('change', later, true);
    window.addEventListener('scroll', () => emit(3, { source: 3, id: idOf(document), x: window.scrollX, y: window.scrollY }), { passive: true });
    document.addEventListener('click', (e) => emit(3, { source: 2, type: 2, id: idOf(e.target), x: e.clientX, y: e.clientY }), true);
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, { once: true });
  else start();
})();
