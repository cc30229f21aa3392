// "Copy as code" in the Playground panel: copy in the browser, show the code framed, insert a cell below.
//
// The kernel keeps `cell` (the %%complete cell) and `python` (the complete(...) call) up to date;
// everything here happens in the browser, because only the browser can write the clipboard and
// only the notebook's model can put a cell right below the panel, at once.

const LABEL = "Copy as code";

function button(text, title) {
  const b = document.createElement("button");
  b.className = "jupyter-button widget-button vman-code-button";
  b.type = "button";
  b.textContent = text;
  b.title = title;
  return b;
}

// The async clipboard needs a secure context (https or localhost); elsewhere (a JupyterHub on plain
// http) the older execCommand("copy") on a selected, off-screen textarea still works from a click.
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (error) {
      // denied or unavailable: try the fallback
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.left = "-9999px";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (error) {
    ok = false;
  }
  area.remove();
  return ok;
}

// JupyterLab's and Notebook 7's widget manager knows its notebook (`context.model`): find the cell
// whose output shows the panel (its model id is `anchor`) and insert the new cell right after it.
// Returns false where there is no such model (VS Code, Colab...): the kernel then falls back.
function insertBelow(model, text) {
  const manager = model.widget_manager;
  const notebook = manager && manager.context && manager.context.model;
  if (!notebook || !notebook.cells || !notebook.sharedModel) return false;
  const anchor = model.get("anchor");
  for (let i = 0; i < notebook.cells.length; i++) {
    const outputs = notebook.cells.get(i).outputs;
    if (!outputs) continue;
    for (let j = 0; j < outputs.length; j++) {
      const view = (outputs.get(j).data || {})["application/vnd.jupyter.widget-view+json"];
      if (view && view.model_id === anchor) {
        notebook.sharedModel.insertCell(i + 1, { cell_type: "code", source: text, metadata: {} });
        return true;
      }
    }
  }
  return false;
}

function flash(element, text, ms = 2000) {
  const before = element.dataset.label || element.textContent;
  element.dataset.label = before;
  element.textContent = text;
  clearTimeout(element._vmanTimer);
  element._vmanTimer = setTimeout(() => {
    element.textContent = before;
  }, ms);
}

function section(title, copyTitle) {
  const box = document.createElement("div");
  box.className = "vman-code-section";
  const head = document.createElement("div");
  head.className = "vman-code-head";
  const label = document.createElement("span");
  label.textContent = title;
  const copy = button("Copy", copyTitle);
  head.append(label, copy);
  const pre = document.createElement("pre");
  pre.className = "vman-code-text";
  box.append(head, pre);
  return { box, pre, copy };
}

function render({ model, el }) {
  el.classList.add("vman-code");
  const bar = document.createElement("div");
  bar.className = "vman-code-bar";
  const main = button(LABEL, "copy the %%complete cell that sends what Run sends, and show the code");
  const insert = button("Insert below", "insert the %%complete cell as a new cell right below the panel");
  const hide = button("Hide", "hide the code");
  const status = document.createElement("span");
  status.className = "vman-code-status";
  status.setAttribute("role", "status");
  bar.append(main, insert, hide, status);

  const frame = document.createElement("div");
  frame.className = "vman-code-frame";
  const cell = section("%%complete cell", "copy the %%complete cell");
  const python = section("or from Python", "copy the complete(...) call");
  const error = document.createElement("div");
  error.className = "vman-code-error";
  frame.append(error, cell.box, python.box);
  el.append(bar, frame);

  const say = (text) => flash(status, text, 2500);

  function update() {
    const open = model.get("shown");
    const problem = model.get("error");
    frame.style.display = open ? "" : "none";
    insert.style.display = open && !problem ? "" : "none";
    hide.style.display = open ? "" : "none";
    error.textContent = problem;
    error.style.display = problem ? "" : "none";
    cell.box.style.display = problem ? "none" : "";
    python.box.style.display = problem ? "none" : "";
    cell.pre.textContent = model.get("cell");
    python.pre.textContent = model.get("python");
    main.disabled = false;
  }

  async function copy(text, what) {
    if (model.get("error")) {
      say("fix the settings first");
      return;
    }
    const ok = await copyText(text);
    say(ok ? `Copied ${what} ✓` : "Could not copy: select the code and press Ctrl+C");
    model.send({ event: ok ? "copied" : "copy-failed", what });
  }

  main.addEventListener("click", async () => {
    model.set("shown", true);
    model.save_changes();
    update();
    await copy(model.get("cell"), "the %%complete cell");
  });
  cell.copy.addEventListener("click", () => copy(model.get("cell"), "the %%complete cell"));
  python.copy.addEventListener("click", () => copy(model.get("python"), "the Python call"));
  hide.addEventListener("click", () => {
    model.set("shown", false);
    model.save_changes();
  });
  insert.addEventListener("click", () => {
    if (insertBelow(model, model.get("cell"))) {
      say("Inserted below the panel ✓");
    } else {
      model.send({ event: "insert" }); // the kernel's set_next_input, where the front end has no notebook model
    }
  });
  for (const name of ["cell", "python", "error", "shown"]) model.on(`change:${name}`, update);
  update();
}

export default { render };
