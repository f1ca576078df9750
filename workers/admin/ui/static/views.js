// DOM helpers. Every value from the API is put in the page with textContent (never as
// HTML), so nothing a User or a device sent can run or restyle the console.

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

// Epoch seconds or milliseconds as ISO 8601 UTC to the second.
export function isoFromS(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  return isoFromMs(Math.round(seconds * 1000));
}

export function isoFromMs(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "–";
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return "–";
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function text(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function pill(value) {
  const word = text(value);
  return el("span", { class: `pill ${word.replace(/[^a-z_]/g, "")}` }, word);
}

export function cells(row, values) {
  for (const value of values) {
    if (value instanceof Node) row.append(el("td", {}, value));
    else if (value && typeof value === "object" && "node" in value) row.append(el("td", { class: value.class }, value.node));
    else row.append(el("td", {}, text(value)));
  }
  return row;
}

export function fields(pairs) {
  const list = el("dl", { class: "fields" });
  for (const [name, value] of pairs) {
    list.append(el("dt", {}, name), el("dd", {}, value instanceof Node ? value : text(value)));
  }
  return list;
}

export function table(head, rows, empty) {
  if (!rows.length) return el("p", { class: "note" }, empty);
  const body = el("tbody");
  for (const values of rows) body.append(cells(el("tr"), values));
  return el("div", { class: "scroll" },
    el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), body));
}
