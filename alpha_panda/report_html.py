"""The HTML page of a report: plotly charts and tables, one self-contained file.

In: the report data that :func:`alpha_panda.report.build_report` returns.
Out: an HTML document with plotly.js inline (no network needed to view it)
and fixed chart ids, so the same report renders to the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

_PLOT_CONFIG: Final = {"displaylogo": False, "responsive": True}

_CSS: Final = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 24px 32px;
       color: #1f2933; background: #fff; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin: 32px 0 8px; font-size: 20px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { color: #52606d; font-size: 13px; margin: 2px 0; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0 16px; }
th, td { padding: 4px 7px; border-bottom: 1px solid #e4e7eb; text-align: right; white-space: nowrap; }
th { background: #f5f7fa; font-weight: 600; } td.l, th.l { text-align: left; }
tr.book td { font-weight: 600; background: #fafbfc; }
.pos { color: #1a7f37; } .neg { color: #cf222e; }
details summary { cursor: pointer; color: #3e4c59; font-size: 14px; margin: 6px 0; }
ul.conv { font-size: 13px; color: #3e4c59; }
"""


# --- formatting ---------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:,.2f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{secs} s" if secs or not any(parts) else "")
    return " ".join(p for p in parts if p)


def _signed(text: str, value: float | None) -> str:
    if value is None or value == 0:
        return html.escape(text)
    return f'<span class="{"pos" if value > 0 else "neg"}">{html.escape(text)}</span>'


def _time(iso: str | None) -> str:
    """``2024-01-02T03:45:30.750000+00:00`` -> ``2024-01-02 03:45:30.750`` (UTC, milliseconds)."""
    if iso is None:
        return "–"
    moment = datetime.fromisoformat(iso)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if moment.microsecond else text


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, row_class: str = "") -> str:
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{row_class}"' if row_class and index == 0 else ""
        cells = "".join(f'<td class="{"l" if i < left else ""}">{cell}</td>' for i, cell in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --- tables -------------------------------------------------------------------------

_SUMMARY: Final[tuple[tuple[str, Callable[[dict[str, Any]], str]], ...]] = (
    ("final equity", lambda s: _num(s["final_equity"])),
    ("total return", lambda s: _signed(_pct(s["total_return"]), s["total_return"])),
    ("ann. volatility", lambda s: _pct(s["annualised_volatility"])),
    ("Sharpe", lambda s: _num(s["sharpe"])),
    ("Sortino", lambda s: _num(s["sortino"])),
    ("max drawdown", lambda s: _pct(s["max_drawdown"])),
    ("drawdown duration", lambda s: _duration(s["max_drawdown_duration_seconds"])),
    ("trades", lambda s: str(s["trades"])),
    ("win rate", lambda s: _pct(s["win_rate"])),
    ("profit factor", lambda s: _num(s["profit_factor"])),
    ("expectancy", lambda s: _signed(_num(s["expectancy"]), s["expectancy"])),
    ("fees paid", lambda s: _num(s["fees_paid"])),
    ("avg holding", lambda s: _duration(s["average_holding_seconds"])),
    ("exposure", lambda s: _pct(s["exposure"])),
)


def _summary_table(report: dict[str, Any]) -> str:
    rows = [["<b>book</b>", *(fmt(report["book"]["stats"]) for _, fmt in _SUMMARY)]]
    for account in report["accounts"]:
        name = html.escape(f"{account['broker']} / {account['strategy_id']}")
        rows.append([name, *(fmt(account["stats"]) for _, fmt in _SUMMARY)])
    return _table(["account", *(name for name, _ in _SUMMARY)], rows, row_class="book")


def _trips_table(trips: Sequence[dict[str, Any]]) -> str:
    headers = ["instrument", "side", "qty", "entry (UTC)", "exit (UTC)", "held", "entry price"]
    headers += ["exit price", "gross P&L", "fees", "net P&L", "fills"]
    rows = [
        [
            str(t["instrument_token"]),
            t["direction"],
            f"{t['quantity']:,}",
            _time(t["entry_time"]),
            _time(t["exit_time"]),
            _duration(t["holding_seconds"]),
            _num(t["entry_price"], 4),
            _num(t["exit_price"], 4),
            _signed(_num(t["gross_pnl"]), t["gross_pnl"]),
            _num(t["fees"]),
            _signed(_num(t["net_pnl"]), t["net_pnl"]),
            str(t["fills"]),
        ]
        for t in trips
    ]
    return _table(headers, rows, left=2)


def _open_table(positions: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            str(p["instrument_token"]),
            f"{p['quantity']:,}",
            _time(p["entry_time"]),
            _num(p["entry_price"], 4),
            _num(p["fees"]),
        ]
        for p in positions
    ]
    return _table(["instrument", "quantity", "opened (UTC)", "entry price", "fees so far"], rows)


def _stats_table(stats: dict[str, Any]) -> str:
    rows = [
        ["starting equity", _num(stats["initial_equity"])],
        ["final equity", _num(stats["final_equity"])],
        ["max drawdown", f"{_pct(stats['max_drawdown'])} ({_num(stats['max_drawdown_amount'])})"],
        [
            "drawdown peak → trough",
            f"{_time(stats['max_drawdown_peak'])} → {_time(stats['max_drawdown_trough'])}",
        ],
        ["recovered at", _time(stats["max_drawdown_recovery"])],
        ["wins / losses", f"{stats['wins']} / {stats['losses']}"],
        ["net P&L of trades", _signed(_num(stats["net_trade_pnl"]), stats["net_trade_pnl"])],
        ["returns sampled", f"{stats['intervals']:,} intervals"],
    ]
    return _table(["", ""], rows)


# --- charts -------------------------------------------------------------------------


def _equity_xy(
    report: dict[str, Any], curve: dict[str, Any], initial: float
) -> tuple[list[str], list[float]]:
    start = report["window"]["start"]
    return [start, *(t for t, _ in curve["equity"])], [initial, *(v for _, v in curve["equity"])]


def _equity_figure(report: dict[str, Any], curve: dict[str, Any], title: str) -> go.Figure:
    x, y = _equity_xy(report, curve, curve["stats"]["initial_equity"])
    drawdown = [0.0, *(d * 100 for d in curve["drawdown"])]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(
        go.Scatter(x=x, y=y, mode="lines", line={"shape": "hv", "color": "#2563eb"}, name="equity"),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=drawdown,
            mode="lines",
            line={"shape": "hv", "color": "#dc2626"},
            fill="tozeroy",
            name="drawdown %",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    fig.update_layout(
        title=title,
        height=430,
        showlegend=False,
        margin={"l": 70, "r": 20, "t": 50, "b": 30},
        template="plotly_white",
    )
    return fig


def _comparison_figure(report: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for account in report["accounts"]:
        initial = account["stats"]["initial_equity"]
        x, y = _equity_xy(report, account, initial)
        returns = [(v / initial - 1) * 100 if initial else 0.0 for v in y]
        name = f"{account['broker']} / {account['strategy_id']}"
        fig.add_trace(go.Scatter(x=x, y=returns, mode="lines", line={"shape": "hv"}, name=name))
    fig.update_layout(
        title="Return of each account (%)",
        height=380,
        yaxis_title="return %",
        margin={"l": 70, "r": 20, "t": 50, "b": 30},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def _chart(fig: go.Figure, div_id: str) -> str:
    return str(pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=_PLOT_CONFIG))


# --- page ---------------------------------------------------------------------------


def _header(report: dict[str, Any]) -> str:
    source = report["source"]
    where = source.get("path") or "Postgres ledger"
    if source["kind"] == "ledger":
        span = f"since {source['since'] or 'the first fill'}, until {source['until'] or 'the last fill'}"
        where = f"{where} ({span}; starting cash {_num(source['starting_cash'])} per account)"
    window = report["window"]
    return (
        f"<h1>{html.escape(report['title'])}</h1>"
        f'<p class="meta">source: {html.escape(str(where))}</p>'
        f'<p class="meta">event time {_time(window["start"])} → {_time(window["end"])} UTC; '
        f"returns per <b>{html.escape(report['interval']['label'])}</b> interval "
        f"({report['intervals_per_year']:,.0f} intervals per year)</p>"
        f'<p class="meta">equity: {html.escape(report["equity_source"])}</p>'
    )


def _account_section(report: dict[str, Any], account: dict[str, Any], index: int) -> str:
    name = f"{account['broker']} / {account['strategy_id']}"
    parts = [
        f"<h2>{html.escape(name)}</h2>",
        _chart(_equity_figure(report, account, f"{name}: equity and drawdown"), f"account-{index}"),
        _stats_table(account["stats"]),
    ]
    trips = account["round_trips"]
    parts.append(f"<details{' open' if len(trips) <= 20 else ''}><summary>{len(trips)} round trips</summary>")
    parts.append(_trips_table(trips) + "</details>")
    if account["open_positions"]:
        parts.append(f"<h3>Open at the end ({len(account['open_positions'])})</h3>")
        parts.append(_open_table(account["open_positions"]))
    return "\n".join(parts)


def render_html(report: dict[str, Any]) -> str:
    """Return the report as one HTML document with plotly.js inline."""
    book = {**report["book"]}
    body = [
        _header(report),
        _summary_table(report),
        _chart(_equity_figure(report, book, "Book (all accounts): equity and drawdown"), "book"),
        _chart(_comparison_figure(report), "accounts"),
        *(_account_section(report, account, i) for i, account in enumerate(report["accounts"])),
        "<h2>How the numbers are computed</h2>",
        '<ul class="conv">' + "".join(f"<li>{html.escape(c)}</li>" for c in report["conventions"]) + "</ul>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(report['title'])}</title>"
        f"<style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        "</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
