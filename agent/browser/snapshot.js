// Describes the page for a model-driven walkthrough (agent/browser Snapshot): visible
// text and the interactive elements, each given a data-flare-ref attribute so a later
// click or type finds the same element.
() => {
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none';
  };
  const sel = 'a[href], button, input:not([type=hidden]), textarea, select, [role=button], [role=link], [role=tab], [role=menuitem], [onclick]';
  const elements = [];
  let n = 0;
  for (const el of Array.from(document.querySelectorAll(sel))) {
    if (!visible(el) || elements.length >= 200) continue;
    n++;
    let ref = el.getAttribute('data-flare-ref');
    if (!ref) { ref = 'e' + n + '-' + Math.random().toString(36).slice(2, 6); el.setAttribute('data-flare-ref', ref); }
    const name = (el.getAttribute('aria-label') || el.innerText || el.value || el.getAttribute('placeholder') || el.getAttribute('title') || el.getAttribute('name') || '').trim().replace(/\s+/g, ' ').slice(0, 120);
    elements.push({ ref: '[data-flare-ref="' + ref + '"]', tag: el.tagName.toLowerCase(), role: el.getAttribute('role') || '', name });
  }
  const text = (document.body ? document.body.innerText : '').replace(/\n{3,}/g, '\n\n').slice(0, 6000);
  return { url: location.href, title: document.title, text, elements };
}
