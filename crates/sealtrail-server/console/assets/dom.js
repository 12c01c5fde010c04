// Building the page from data without ever parsing data as markup: every value goes in as
// a text node or an attribute, so an action name like "<img onerror=…>" shows as itself.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function applyProps(element, props) {
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      element.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name === 'value' || name === 'checked' || name === 'selected') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

/** An HTML element: h('a', {href}, 'text', child, [more children]). */
export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  applyProps(element, props);
  append(element, children);
  return element;
}

/** An SVG element; attributes (fill, width…) are presentation attributes, not styles. */
export function s(tag, props, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  applyProps(element, props);
  append(element, children);
  return element;
}

/** Replaces everything in `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
  return parent;
}

/** A labelled text input: [label, input] wrapped in a .field. */
export function textField({ id, label, name, value = '', placeholder, type = 'text', hint, wide = false, ...rest }) {
  const hintId = hint ? `${id}-hint` : null;
  return h(
    'div',
    { class: ['field', wide ? 'field-wide' : null] },
    h('label', { for: id }, label),
    h('input', { id, name, type, value, placeholder, 'aria-describedby': hintId, autocomplete: 'off', spellcheck: 'false', ...rest }),
    hint ? h('small', { id: hintId, class: 'hint' }, hint) : null,
  );
}

/** A <select> with a label; options are [value, text] pairs. */
export function selectField({ id, label, name, value, options }) {
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    h(
      'select',
      { id, name },
      options.map(([optionValue, text]) => h('option', { value: optionValue, selected: optionValue === value }, text)),
    ),
  );
}

/** A message box: kind is 'error', 'warning', 'info' or 'ok'. */
export function notice(kind, ...children) {
  return h('div', { class: ['notice', `notice-${kind}`], role: kind === 'error' ? 'alert' : 'status' }, ...children);
}
