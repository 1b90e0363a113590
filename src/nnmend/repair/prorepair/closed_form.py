"""Point-wise ProRepair without gradient descent: a minimal-disturbance edit of one layer, solved in its dual.

Applies when a single Linear layer ``L`` of ``h`` is edited, only a ReLU (or nothing) follows it in ``h``,
and the head ``g`` is affine (the default split). For an affine head the *proxy region* of a point item
is exact: the features ``z`` with ``a_k · z + β_k >= margin_k`` for every specification row ``k``
(``a_k = C_k W_g``; the proxy box of :func:`.proxy.linear_proxy` is a box inside it). With ``a`` the frozen
prefix's output (computed once), ``ā = [a, 1]`` and the ReLU pattern ``D`` of the current pre-activation
fixed, ``z = D (W + ΔW) ā`` is linear in the edit ``ΔW``, so each round solves

    min_ΔW  tr(ΔW G ΔWᵀ)   s.t.   (a_k ∘ D_i)ᵀ ΔW ā_i  >=  margin_k - (a_k · z_i + β_k)   for items i, rows k,

with ``G = λ(n/m) Σ_c ā_c ā_cᵀ + ρ·I``: the edit that moves the *clean* inputs' pre-activations least (in
the least-squares sense) while putting every repair feature inside its proxy region. Its dual is a
non-negative quadratic program in one multiplier per (item, row) pair near or past its bound,
``max_{μ>=0} gᵀμ - ½ μᵀKμ`` with ``K_st = (c_s · c_t)(ā_sᵀ G⁻¹ ā_t)`` (solved by accelerated projected
gradient), and ``ΔW = Σ_s μ_s c_s (G⁻¹ ā_s)ᵀ``. Rounds repeat while ReLU patterns change. No Adam steps,
no backward passes: the cost is a few small dense solves (measured in benchmarks/prorepair.py).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .config import ProRepairConfig
from .proxy import _feature_rows, affine_head
from .spec import label_spec


def applicable(h: nn.Sequential, g: nn.Sequential, edit_idx: list[int]) -> bool:
    """The dual solve applies: every edited layer is Linear and the head ``g`` is affine."""
    return bool(edit_idx) and all(isinstance(h[i], nn.Linear) for i in edit_idx) and affine_head(g) is not None


def _dual(K: torch.Tensor, g: torch.Tensor, iters: int) -> torch.Tensor:
    """``argmax_{μ>=0} gᵀμ - ½ μᵀKμ`` by FISTA on the projected gradient (K PSD, a few hundred rows)."""
    L = float(torch.linalg.eigvalsh(K)[-1].clamp(min=1e-12))
    mu = torch.zeros_like(g)
    y, t = mu, 1.0
    tol = 1e-4 * float(g.abs().max().clamp(min=1e-12))
    for it in range(iters):
        nxt = (y + (g - K @ y) / L).clamp(min=0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = nxt + (t - 1) / t_next * (nxt - mu)
        mu, t = nxt, t_next
        if it % 25 == 24:
            # KKT residual: zero gradient on active multipliers, no ascent direction on the others. The step only
            # steers a round (the next round re-measures the real outputs), so 1e-4 of the largest gap is enough
            grad = g - K @ mu
            if float(torch.where(mu > 0, grad.abs(), grad.clamp(min=0)).max()) < tol:
                break
    return mu


class _Metric:
    """``G = λ' AᵀA + ρ I`` (A the clean inputs' ``ā``, m × D) and ``G⁻¹ v``: Cholesky of G when D <= m, else the
    Woodbury form ``(v - λ' Aᵀ (ρI + λ' AAᵀ)⁻¹ A v) / ρ`` (CNN_small's fc1: D = 3137 > m = 1000, 6× fewer flops)."""

    def __init__(self, A: torch.Tensor, lam: float, ridge: float):
        self.A, self.lam = A, lam
        self.rho = ridge * lam * float((A * A).sum()) / A.shape[1] + 1e-12
        D, m = A.shape[1], A.shape[0]
        self.woodbury = D > m
        # the Gram product in float32 (its rounding, ~1e-7 of the diagonal, is far below ρ, ~1e-4 of it),
        # the factorisation in float64: CNN_small's 1000 × 3137 product took 0.14 s in float64, most of the repair
        A32 = self.A32 = A.float()
        gram = (A32 @ A32.T) if self.woodbury else (A32.T @ A32)
        M = lam * gram.double() + self.rho * torch.eye(len(gram), dtype=A.dtype)
        self.chol = torch.linalg.cholesky(M)

    def solve(self, V: torch.Tensor) -> torch.Tensor:
        """``G⁻¹ v`` for the rows ``v`` of ``V`` (s, D) → (s, D)."""
        if not self.woodbury:
            return torch.cholesky_solve(V.T, self.chol).T
        # the two m × D products in float32 (as the Gram): the result only steers a round whose outcome is
        # re-checked on the network's real outputs, and the float64 solve keeps the ridge's conditioning
        A32 = self.A32
        inner = torch.cholesky_solve((A32 @ V.float().T).double(), self.chol)   # (m, s)
        return (V - self.lam * (A32.T @ inner.float()).T.double()) / self.rho


def _layer_io(net: nn.Sequential, edit: list[int], x: torch.Tensor, grad: bool):
    """Inputs ``ā = [a, 1]`` (float64) and outputs (graph-attached when ``grad``) of every edited layer, and ``net(x)``."""
    ins, outs = [], []
    cur = x
    for i, m in enumerate(net):
        if i in edit:
            a = cur.flatten(1)
            ins.append(torch.cat([a.detach().double(), torch.ones(len(a), 1, dtype=torch.float64)], 1))
            cur = m(cur)
            if grad and not cur.requires_grad:
                cur = cur.requires_grad_(True)
            outs.append(cur)
        else:
            cur = m(cur)
    return ins, outs, cur


def closed_form_repair(net: nn.Sequential, split_idx: int, edit: list[int], x: torch.Tensor, y: torch.Tensor,
                       clean_x: torch.Tensor, cfg: ProRepairConfig, log) -> dict:
    """Edit the Linear layers ``net[edit]`` in place until every repair input's feature is inside its proxy region.

    Each round linearises every item's head rows in the edited layers' outputs (exact when only a ReLU
    separates the last edited layer from an affine head; Gauss-Newton otherwise), takes the
    minimal-disturbance step of the module docstring summed over layers
    (``K = Σ_L (J_L J_Lᵀ) ∘ (Ā_L G_L⁻¹ Ā_Lᵀ)``), and repeats until every feature is inside. Returns the record.
    """
    start = time.monotonic()
    h = nn.Sequential(*list(net)[:split_idx]).eval()
    head = affine_head(nn.Sequential(*list(net)[split_idx:]))
    spec = label_spec(y, head.out_features)
    a_rows, beta = _feature_rows(head, spec)                       # (n, R, f), (n, R) float64
    C, d = spec.C.double(), spec.d.double()
    n, R = a_rows.shape[:2]
    with torch.no_grad():
        cl_in, _, _ = _layer_io(net, edit, clean_x, grad=False)
        scale = float(h(clean_x[:2048]).flatten(1).std(0).mean().clamp(min=1e-6))
    # per layer: G_L = λ(n/m) Σ ā āᵀ + ρ I
    metrics = [_Metric(A, cfg.preserve_weight * n / len(A), cfg.ridge) for A in cl_in]
    margin = cfg.proxy_margin * scale * a_rows.norm(dim=-1)       # (n, R): distance to the boundary
    record = {"rounds": [], "status": "budget", "solver": "closed form (minimal-disturbance dual QP)"}
    for rnd in range(cfg.max_rounds):
        ins, outs, out = _layer_io(net, edit, x, grad=True)
        value = torch.einsum("nro,no->nr", C, out.double()) - d                  # (n, R): > 0 is correct
        gap = (margin - value).detach()
        ok = (value > 0).all(1)
        inside = (gap <= 0).all(1)
        row = {"round": rnd, "correct": int(ok.sum()), "inside_proxy": int(inside.sum()), "items": n,
               "seconds": round(time.monotonic() - start, 3)}
        record["rounds"].append(row)
        log(row)
        if bool(inside.all()):
            record["status"] = "repaired"
            break
        if time.monotonic() - start > cfg.time_budget:
            break
        # constraints near or past their bound (others stay inactive; a later round adds any that move)
        item, r = torch.nonzero(gap > -margin, as_tuple=True)
        jac = [torch.zeros(len(item), o.flatten(1).shape[1], dtype=torch.float64) for o in outs]
        for k in r.unique().tolist():                              # one backward pass per specification row
            sel = torch.nonzero(r == k).squeeze(1)
            grads = torch.autograd.grad(value[:, k].sum(), outs, retain_graph=True)
            for J, gk in zip(jac, grads):
                J[sel] = gk.flatten(1)[item[sel]].double()
        with torch.no_grad():
            # ā depends on the item only, not on the row: solve once per distinct item (up to 9× fewer solves)
            items, inv = item.unique(return_inverse=True)
            ginv = [G.solve(A[items]) for A, G in zip(ins, metrics)]                # G_L⁻¹ ā per item
            K = sum((J @ J.T) * (A[items] @ gi.T)[inv][:, inv] for J, A, gi in zip(jac, ins, ginv))
            K += 1e-9 * K.diagonal().mean().clamp(min=1e-12) * torch.eye(len(K), dtype=K.dtype)
            # aim at twice the margin: the linearisation under-shoots when ReLU patterns change, and one
            # aimed step past the bound saves the rounds that would creep up to it
            mu = _dual(K, (gap + margin)[item, r], iters=cfg.dual_iters)
            for i, J, gi in zip(edit, jac, ginv):
                coef = torch.zeros(len(items), J.shape[1], dtype=J.dtype).index_add_(0, inv, J * mu[:, None])
                dW = coef.T @ gi                                                # (out, d+1)
                net[i].weight += dW[:, :-1].to(net[i].weight.dtype)
                net[i].bias += dW[:, -1].to(net[i].bias.dtype)
    with torch.no_grad():
        if record["status"] != "repaired" and bool((net(x).argmax(1) == y).all()):
            record["status"] = "repaired (not every feature inside its proxy region)"
    record["seconds"] = time.monotonic() - start
    return record
