"""Naive references for every loss, written from the formulas with explicit loops over samples.

They share no code with faceid.losses: they read the learnt parameters off a built loss and
recompute the value element by element in float64.
"""

import math

import torch

Tensor = torch.Tensor


def norm(v: Tensor) -> Tensor:
    return torch.sqrt((v * v).sum())


def cos_between(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum() / (norm(a) * norm(b))


def cross_entropy_rows(rows: list[list[Tensor]], labels: Tensor) -> Tensor:
    total = 0.0
    for row, label in zip(rows, labels.tolist(), strict=True):
        logits = torch.stack(row)
        total = total - (logits[label] - torch.log(torch.exp(logits).sum()))
    return total / len(rows)


def softmax_rows(x, W, b):
    return [[(x[i] * W[j]).sum() + b[j] for j in range(len(W))] for i in range(len(x))]


def softmax(x, y, W, b):
    return cross_entropy_rows(softmax_rows(x, W, b), y)


def l2softmax(x, y, W, b, alpha):
    return cross_entropy_rows([[alpha * (x[i] / norm(x[i]) * W[j]).sum() + b[j] for j in range(len(W))]
                               for i in range(len(x))], y)


def normface(x, y, W, s):
    return cross_entropy_rows([[s * cos_between(x[i], W[j]) for j in range(len(W))] for i in range(len(x))], y)


def coco(x, y, C, alpha):
    return cross_entropy_rows([[alpha * cos_between(x[i], C[j]) for j in range(len(C))] for i in range(len(x))], y)


def combined(x, y, W, s, m1, m2, m3):
    rows = []
    for i in range(len(x)):
        row = []
        for j in range(len(W)):
            c = cos_between(x[i], W[j])
            if j == int(y[i]):
                theta = torch.acos(c)
                if m1 * theta.item() + m2 <= math.pi:
                    c = torch.cos(m1 * theta + m2) - m3
                else:  # the documented fallback, continuous at θ* = (π − m2)/m1
                    c = c - math.cos((math.pi - m2) / m1) - 1 - m3
            row.append(s * c)
        rows.append(row)
    return cross_entropy_rows(rows, y)


def large_margin(x, y, W, m, lam, normalize):
    rows = []
    for i in range(len(x)):
        row = []
        for j in range(len(W)):
            w = W[j] / norm(W[j]) if normalize else W[j]
            if j == int(y[i]):
                c = cos_between(x[i], w)
                theta = torch.acos(c).item()
                k = min(math.floor(m * theta / math.pi), m - 1)
                psi = (-1) ** k * torch.cos(m * torch.acos(c)) - 2 * k
                row.append(norm(w) * norm(x[i]) * (lam * c + psi) / (1 + lam))
            else:
                row.append((x[i] * w).sum())
        rows.append(row)
    return cross_entropy_rows(rows, y)


def _unit(x):
    return [x[i] / norm(x[i]) for i in range(len(x))]


def contrastive(x, y, margin):
    u, total, count = _unit(x), 0.0, 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            d = norm(u[i] - u[j])
            if int(y[i]) == int(y[j]):
                total = total + 0.5 * d**2
            else:
                total = total + 0.5 * torch.clamp(margin - d, min=0) ** 2
            count += 1
    return total / count if count else torch.zeros((), dtype=x.dtype)


def triplet(x, y, margin, mining):
    u = _unit(x)
    n = len(x)
    D = [[((u[i] - u[j]) ** 2).sum() for j in range(n)] for i in range(n)]
    losses = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and int(y[p]) == int(y[a])]
        negatives = [q for q in range(n) if int(y[q]) != int(y[a])]
        if not positives or not negatives:
            continue
        if mining == "hard":
            hardest_p = max(positives, key=lambda p: float(D[a][p]))
            nearest_n = min(negatives, key=lambda q: float(D[a][q]))
            losses.append(torch.clamp(D[a][hardest_p] - D[a][nearest_n] + margin, min=0))
            continue
        for p in positives:
            if mining == "all":
                losses.extend(torch.clamp(D[a][p] - D[a][q] + margin, min=0) for q in negatives)
                continue
            farther = [q for q in negatives if float(D[a][q]) > float(D[a][p])]
            if farther:
                q = min(farther, key=lambda q: float(D[a][q]))
            else:
                q = max(negatives, key=lambda q: float(D[a][q]))
            losses.append(torch.clamp(D[a][p] - D[a][q] + margin, min=0))
    return torch.stack(losses).mean() if losses else torch.zeros((), dtype=x.dtype)


def center_term(x, y, centers, factor):
    return factor * sum(((x[i] - centers[int(y[i])]) ** 2).sum() for i in range(len(x))) / len(x)


def center_invariant_term(x, y, centers, invariant_weight):
    sq = [(centers[k] ** 2).sum() for k in range(len(centers))]
    mean_sq = sum(sq) / len(sq)
    invariant = sum((sq[int(y[i])] - mean_sq) ** 2 for i in range(len(x))) / (4 * len(x))
    return center_term(x, y, centers, 0.5) + invariant_weight * invariant


def range_term(x, y, k, margin):
    classes = sorted(set(y.tolist()))
    intra = 0.0
    for c in classes:
        members = [i for i in range(len(x)) if int(y[i]) == c]
        distances = sorted((((x[a] - x[b]) ** 2).sum() for ai, a in enumerate(members) for b in members[ai + 1:]),
                           key=float, reverse=True)
        if not distances:
            continue
        top = distances[: min(k, len(distances))]
        intra = intra + len(top) / sum(1 / d for d in top)
    if len(classes) < 2:
        return intra + 0 * x.sum()
    means = [sum(x[i] for i in range(len(x)) if int(y[i]) == c) / sum(int(y[i]) == c for i in range(len(x)))
             for c in classes]
    closest = min(((means[a] - means[b]) ** 2).sum() for a in range(len(means)) for b in range(a + 1, len(means)))
    return intra + torch.clamp(margin - closest, min=0)


def marginal_term(x, y, threshold, error_margin):
    u, m, total = _unit(x), len(x), 0.0
    for i in range(m):
        for j in range(i + 1, m):
            sign = 1.0 if int(y[i]) == int(y[j]) else -1.0
            total = total + torch.clamp(error_margin - sign * (threshold - ((u[i] - u[j]) ** 2).sum()), min=0)
    return total / (m * m - m)


def lace(x, y, S, mu, P, s):
    rows = []
    for i in range(len(x)):
        centred = x[i] - mu
        rows.append([s * (S[j] @ P @ centred) / (torch.sqrt(S[j] @ P @ S[j]) * torch.sqrt(centred @ P @ centred))
                     for j in range(len(S))])
    return cross_entropy_rows(rows, y)


def ncm(x, y, anchors, metric):
    rows = []
    for i in range(len(x)):
        if metric == "euclidean":
            rows.append([-norm(x[i] - a) for a in anchors])
        else:
            rows.append([-(1 - cos_between(x[i], a)) for a in anchors])
    return cross_entropy_rows(rows, y)


def lgm(x, y, means, log_var, alpha, lkd_weight):
    rows, likelihood = [], 0.0
    for i in range(len(x)):
        row = []
        for k in range(len(means)):
            d = 0.5 * (((x[i] - means[k]) ** 2) / torch.exp(log_var[k])).sum()
            half_log_det = 0.5 * log_var[k].sum()
            if k == int(y[i]):
                row.append(-d - alpha * d - half_log_det)
                likelihood = likelihood + d + half_log_det
            else:
                row.append(-d - half_log_det)
        rows.append(row)
    return cross_entropy_rows(rows, y) + lkd_weight * likelihood / len(x)
