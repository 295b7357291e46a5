// Renders /openapi.json as a readable reference; plain DOM, every text set with textContent.
"use strict";

(async () => {
  const root = document.getElementById("reference");
  const el = (tag, text, cls) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  };

  // A small subset of Markdown: ``` fences become <pre>, `code` spans, blank-line paragraphs.
  function markdown(text) {
    const out = [];
    const blocks = (text || "").split(/```/);
    blocks.forEach((block, i) => {
      if (i % 2 === 1) {
        out.push(el("pre", block.replace(/^\w*\n/, "").trimEnd()));
        return;
      }
      for (const para of block.split(/\n\s*\n/)) {
        if (!para.trim()) continue;
        const p = el("p");
        para.replace(/\*\*/g, "").split(/`/).forEach((part, j) => {
          p.append(j % 2 ? el("code", part) : document.createTextNode(part));
        });
        out.push(p);
      }
    });
    return out;
  }

  function typeOf(schema) {
    if (!schema) return "";
    if (schema.anyOf) return schema.anyOf.map(typeOf).filter((t) => t !== "null").join(" | ");
    if (schema.type === "array") return `array of ${typeOf(schema.items)}`;
    return schema.format ? `${schema.type} (${schema.format})` : schema.type || "object";
  }

  let spec;
  try {
    const response = await fetch("/openapi.json");
    spec = await response.json();
  } catch (err) {
    root.replaceChildren(el("p", `Could not load /openapi.json: ${err.message}`));
    return;
  }
  const sections = [el("p", `${spec.info.title} ${spec.info.version} — ${spec.info.summary || ""}`)];
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const section = el("section", undefined, "endpoint");
      const heading = el("h2");
      heading.append(el("span", method.toUpperCase(), "method"), el("span", path, "path"), el("span", op.summary || ""));
      section.append(heading, ...markdown(op.description));
      if (op.parameters && op.parameters.length) {
        const table = el("table");
        const head = el("tr");
        ["parameter", "in", "type", "description"].forEach((h) => head.append(el("th", h)));
        table.append(head);
        for (const p of op.parameters) {
          const row = el("tr");
          [p.name + (p.required ? " *" : ""), p.in, typeOf(p.schema), p.description || (p.schema && p.schema.description) || ""]
            .forEach((v) => row.append(el("td", v)));
          table.append(row);
        }
        section.append(table);
      }
      if (op.requestBody) {
        section.append(el("p", `Request body: ${Object.keys(op.requestBody.content).join(", ")}`));
      }
      if (op.security) section.append(el("p", "Needs the API key (Authorization: Bearer KEY, or X-API-Key: KEY)."));
      const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code} ${r.description || ""}`);
      if (codes.length) section.append(el("p", `Responses: ${codes.join("; ")}`));
      sections.push(section);
    }
  }
  root.replaceChildren(...sections);
})();
