"""Decode one evaluation sample and show every refinement step: per block, rows = steps, columns = positions.

Open (mask) positions are dim (their current top prediction is shown), tokens are coloured by confidence (red
low, green high), tokens whose prediction changed since the previous step are highlighted, newly promoted
positions are underlined, tokens sent back to open this step (revocations: remasking, renoising) are struck
through and marked `↺`, and the step at which the block converged is marked. The last row of a block is what was
committed; positions whose committed token differs from the token they were promoted with (revisions) are
highlighted there. `--png` draws the same grid with `plots.plot_trace_heatmap` (one file per block when the
sample needs several), `--html` writes a self-contained page with the grid and the confidences as tooltips.
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

from workbench.commands.common import (
    add_canvas_arguments, add_chat_template_argument, add_model_arguments, add_placement_arguments, add_quiet_argument,
    chat_template_for, check_decoding_counts, decode_config, placed_model, resolve_model, strategy_params, task_for,
)

HELP = "decode one sample and show every step of every block (terminal grid, PNG heatmap, HTML)"
MAX_CELL = 6  # characters per position in the terminal grid


def add_arguments(parser) -> None:
    parser.add_argument("--strategy", default="spd", help="decoding strategy (see `workbench list`)")
    parser.add_argument("--sample", type=int, default=0, metavar="K", help="index of the evaluation example")
    parser.add_argument("--tau", type=float, default=None, help="the strategy's main knob (see `workbench list`)")
    add_model_arguments(parser)
    parser.add_argument("--task", default=None, help="task name or jsonl:PATH (default: the model's training task)")
    parser.add_argument("--block-size", type=int, default=None, metavar="N")
    parser.add_argument("--gen-length", type=int, default=None, metavar="N")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py")
    add_canvas_arguments(parser)
    add_chat_template_argument(parser)
    add_placement_arguments(parser)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--png", default=None, metavar="FILE.png", help="write the heatmap (.png or .svg)")
    parser.add_argument("--html", default=None, metavar="FILE.html", help="write a self-contained HTML page")
    add_quiet_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the trace as JSON instead of the grid")


def token_text(tokenizer, token_id: int) -> str:
    """Printable text of one token: whitespace made visible, special tokens as short symbols."""
    special = {getattr(tokenizer, "eos_token_id", None): "⊣", getattr(tokenizer, "pad_token_id", None): "∅",
               getattr(tokenizer, "mask_token_id", None): "▒", getattr(tokenizer, "unk_token_id", None): "�"}
    if token_id in special:
        return special[token_id]
    text = tokenizer.convert_ids_to_tokens(int(token_id))
    text = str(text).replace("Ġ", " ").replace("▁", " ")
    return text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def conf_rgb(conf: float) -> tuple[int, int, int]:
    """Red (0) -> yellow (0.5) -> green (1)."""
    c = min(max(float(conf), 0.0), 1.0)
    if c < 0.5:
        return 220, int(60 + 300 * c), 60
    return int(220 - 340 * (c - 0.5)), 210, 60


def render_terminal(blocks, tokenizer, console) -> None:
    from rich.text import Text

    for block in blocks:
        width = min(MAX_CELL, max([len(token_text(tokenizer, t)) for s in block.steps for t in s.top]
                                  + [len(token_text(tokenizer, t)) for t in block.committed] + [1]))
        pad = max(len("commit"), len(str(len(block.steps))) + 5)
        end = block.start + len(block.committed)
        status = (f"converged at step {block.converged_step}" if block.converged_step is not None
                  else f"forward cap after {len(block.steps)} steps")
        console.print(Text(f"block {block.block_index}: generated positions {block.start}..{end - 1}, "
                           f"{len(block.steps)} steps, {status}", style="bold"))
        header = Text(" " * (pad + 1))
        for j in range(len(block.committed)):
            header.append(f"{j:<{width}} "[: width + 1], style="dim")
        console.print(header)
        for s in block.steps:
            line = Text(f"step {s.step:<{pad - 5}} ")
            for j, tok in enumerate(s.top):
                cell = f"{_cut(token_text(tokenizer, tok), width):<{width}}"
                if s.revoked and s.revoked[j] and s.is_mask[j]:  # a token sent back to open this step
                    cell = f"{_cut('↺' + token_text(tokenizer, tok), width):<{width}}"
                    style = "bold yellow strike"
                elif s.is_mask[j]:
                    style = "dim grey50"
                else:
                    r, g, b = conf_rgb(s.conf[j])
                    style = f"rgb({r},{g},{b})"
                    if s.changed[j]:
                        style += " bold reverse"
                    if s.promoted[j]:
                        style += " underline"
                line.append(cell, style=style)
                line.append(" ")
            marks = []
            if s.promoted and any(s.promoted):
                marks.append(f"+{sum(s.promoted)}")
            if s.revoked and any(s.revoked):
                marks.append(f"↺{sum(s.revoked)}")
            if s.finishing and s.converged:
                marks.append("✓ converged")
            elif s.finishing:
                marks.append("■ cap")
            line.append("  " + " ".join(marks), style="bold green" if s.converged else "")
            console.print(line)
        line = Text(f"{'commit':<{pad}} ", style="bold")
        for j, tok in enumerate(block.committed):
            cell = f"{_cut(token_text(tokenizer, tok), width):<{width}}"
            line.append(cell, style="bold magenta reverse" if block.revised and block.revised[j] else "bold")
            line.append(" ")
        n_rev = sum(block.revised or [])
        line.append(f"  {n_rev} revised" if n_rev else "")
        console.print(line)
        console.print()
    console.print(Text("dim = mask position (its current top shown); colour = confidence, red low -> green high; "
                       "reverse = prediction changed since the previous step; underline = promoted this step; "
                       "↺ struck through = a token sent back to open this step (revocation); "
                       "magenta = committed token differs from the promoted one (revision)", style="dim"))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.6em; }
table.trace { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 13px; }
table.trace td, table.trace th { border: 1px solid #ddd; padding: 2px 5px; text-align: center; min-width: 1.4em; }
table.trace th { background: #f4f4f4; font-weight: normal; color: #666; }
td.mask { background: #eee; color: #aaa; }
td.changed { outline: 2px solid #d00; outline-offset: -2px; font-weight: bold; }
td.promoted { text-decoration: underline; }
td.revised { outline: 2px solid #a0a; outline-offset: -2px; font-weight: bold; }
td.revoked { background: #ffe7a0; color: #850; text-decoration: line-through; font-weight: bold; }
tr.converged th { background: #dfd; color: #060; font-weight: bold; }
tr.commit td { font-weight: bold; border-top: 2px solid #888; }
.meta { color: #555; } .legend span { padding: 1px 6px; margin-right: 6px; border: 1px solid #ccc; }
"""


def render_html(blocks, tokenizer, meta: dict) -> str:
    """A self-contained page (inline CSS, no script, no external assets); tooltips via `title`."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>trace: {esc(meta['strategy'])} sample {meta['sample']}</title>", f"<style>{_CSS}</style>",
             "</head><body>", f"<h1>Decoding trace: {esc(meta['strategy'])}, sample {meta['sample']}</h1>",
             "<p class='meta'>" + "<br>".join(f"{esc(k)}: <code>{esc(str(v))}</code>" for k, v in meta.items())
             + "</p>",
             "<p class='legend'><span style='background:#eee;color:#aaa'>mask position</span>"
             "<span style='background:rgb(220,90,60)'>low confidence</span>"
             "<span style='background:rgb(50,210,60)'>high confidence</span>"
             "<span style='outline:2px solid #d00'>prediction changed</span>"
             "<span style='text-decoration:underline'>promoted this step</span>"
             "<span style='background:#ffe7a0;text-decoration:line-through'>↺ sent back to open (revoked)</span>"
             "<span style='outline:2px solid #a0a'>revised (committed differs from promoted)</span></p>"]
    for block in blocks:
        status = (f"converged at step {block.converged_step}" if block.converged_step is not None
                  else f"forward cap after {len(block.steps)} steps")
        parts.append(f"<h2>Block {block.block_index} ({len(block.steps)} steps, {status})</h2>")
        parts.append("<table class='trace'><tr><th>step</th>"
                     + "".join(f"<th>{block.start + j}</th>" for j in range(len(block.committed))) + "</tr>")
        for s in block.steps:
            converged = s.finishing and s.converged
            label = f"{s.step} ✓" if converged else f"{s.step} ■" if s.finishing else str(s.step)
            cells = []
            for j, tok in enumerate(s.top):
                text = token_text(tokenizer, tok)
                revoked = bool(s.revoked and s.revoked[j])
                kind = "open" if s.is_mask[j] else "token"
                title = (f"position {block.start + j}, step {s.step}: {kind}; top {text!r} "
                         f"(id {tok}), confidence {s.conf[j]:.4f}" + (", changed" if s.changed[j] else "")
                         + (", promoted" if s.promoted[j] else "") + (", revoked" if revoked else ""))
                classes = ["revoked"] if revoked and s.is_mask[j] else ["mask"] if s.is_mask[j] else []
                if revoked and s.is_mask[j]:
                    text = "↺" + text
                style = ""
                if not s.is_mask[j]:
                    r, g, b = conf_rgb(s.conf[j])
                    style = f" style='background:rgb({r},{g},{b})'"
                    classes += ["changed"] if s.changed[j] else []
                    classes += ["promoted"] if s.promoted[j] else []
                cells.append(f"<td class='{' '.join(classes)}'{style} title='{esc(title, quote=True)}'>"
                             f"{esc(text)}</td>")
            parts.append(f"<tr class='{'converged' if converged else ''}'><th>{esc(label)}</th>"
                         + "".join(cells) + "</tr>")
        cells = []
        for j, tok in enumerate(block.committed):
            text = token_text(tokenizer, tok)
            revised = bool(block.revised and block.revised[j])
            title = f"position {block.start + j}: committed {text!r} (id {tok})" + (", revised" if revised else "")
            cells.append(f"<td class='{'revised' if revised else ''}' title='{esc(title, quote=True)}'>"
                         f"{esc(text)}</td>")
        parts.append("<tr class='commit'><th>commit</th>" + "".join(cells) + "</tr></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_pngs(blocks, tokenizer, path: str, title: str) -> list[Path]:
    """One heatmap per block: `path` itself for a single block, `<stem>.block<k><suffix>` for several."""
    from workbench.results.plots import plot_trace_heatmap

    path = Path(path)
    out = []
    for block in blocks:
        target = path if len(blocks) == 1 else path.with_name(f"{path.stem}.block{block.block_index}{path.suffix}")
        out.append(plot_trace_heatmap(block.as_heatmap(lambda t: token_text(tokenizer, t)), target,
                                      title=f"{title}, block {block.block_index}"))
    return out


def main(args) -> int:
    from workbench.decoding.limits import check_lengths, preview
    from workbench.decoding.loop import generate
    from workbench.decoding.registry import format_providers, make_manager
    from workbench.models.tokenizer import decode, encode_prompt

    from plugins.tracer import Tracer

    if args.sample < 0:
        raise ValueError(f"--sample {args.sample}: give the index of an evaluation example (>= 0)")
    check_decoding_counts(args)
    if args.png and Path(args.png).suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"--png {args.png}: the heatmap is written as .png or .svg")
    params = strategy_params(args)
    tracer = Tracer()
    manager = make_manager(args.strategy, params=params, plugin_files=args.plugin, extra_plugins=[tracer])
    model_path, trainer = resolve_model(args)
    model, tokenizer, _ = placed_model(model_path, args)
    task_name, task = task_for(args, model_path)
    example = task.eval_split(args.sample + 1)[args.sample]
    config = decode_config(args, model, task)
    prompt = encode_prompt(tokenizer, example.prompt, chat_template_for(args, model, tokenizer))  # as `run` does
    check_lengths(model, [prompt], config.decoded_length,
                  names=[f"sample {args.sample} (prompt {preview(example.prompt)})"])
    # The sample's own id, as `run` passes it: its random stream (temperature, noise) is the one `run` decoded with
    result = generate(model, [prompt], manager, config, sample_ids=[example.uid])[0]
    blocks = tracer.rows[0]
    output = decode(tokenizer, result.ids)
    meta = {"strategy": args.strategy, "sample": args.sample, "model": trainer or model_path, "task": task_name,
            "params": params or "defaults", "decisions": format_providers(manager), "prompt": example.prompt,
            "expected": example.final, "output": output, "correct": bool(task.check(example, output)),
            "nfe": result.nfe, "tokens": result.tokens, "revisions": tracer.last[0]}

    if args.json:
        import attrs

        print(json.dumps({**meta, "params": params, "blocks": [attrs.asdict(b) for b in blocks]}))
    else:
        from rich.console import Console

        console = Console(highlight=False)
        for key in ("strategy", "model", "task", "params", "decisions"):
            console.print(f"[dim]{key}:[/dim] {meta[key]}", markup=True)
        console.print(f"prompt {example.prompt!r} -> output {output!r} (expected {example.final!r}, "
                      f"{'correct' if meta['correct'] else 'wrong'}); NFE {result.nfe}, {result.tokens} tokens, "
                      f"{meta['revisions']} revisions", markup=False)
        console.print()
        render_terminal(blocks, tokenizer, console)
    written = []
    if args.png:
        written += write_pngs(blocks, tokenizer, args.png, f"{args.strategy}, sample {args.sample}")
    if args.html:
        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(blocks, tokenizer, meta), encoding="utf-8")
        written.append(path)
    for path in written:
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
