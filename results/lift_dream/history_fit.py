"""Does the previous action (and the difference before the last) make the arm's one-step
response predictable? Fits the same small MLP offline with and without them and reports
held-out one-step end-effector errors. Run from the repository root (~1 min):

    python results/lift_dream/history_fit.py
"""
import glob
import time

import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset

torch.manual_seed(0); torch.set_num_threads(1)
KEYS = ("object_state", "state")
def load(paths):
    S, A = [], []
    for p in paths:
        ds = ClipDataset(p, clip_len=1, cameras=(), state_keys=KEYS)
        for i in range(len(ds.episodes)):
            ep = ds.whole_episode(i); S.append(ep["state"].float().numpy()); A.append(ep["actions"].float().numpy())
    return S, A
def features(S, A, hist):
    X, Y = [], []
    for s, a in zip(S, A):
        T = len(s)
        for t in range(2, T - 1):   # predict s[t+1] from s[t], s[t-1], s[t-2], a[t+1] (action INTO frame t+1), a[t]
            d1 = s[t] - s[t - 1]; d2 = s[t - 1] - s[t - 2]
            x = [s[t], d1, a[t + 1]]
            if hist: x += [d2, a[t]]
            X.append(np.concatenate(x)); Y.append(s[t + 1, 3:6] - s[t, 3:6])
    return np.array(X, np.float32), np.array(Y, np.float32)
train_paths = [p for p in glob.glob("data/lift_state/*.hdf5") if "test_" not in p] + glob.glob("data/lift_roll/*_train.hdf5") + glob.glob("data/lift_dream/*.hdf5")
test = {"expert": ["data/lift_state/test_expert.hdf5"], "noise05": ["data/lift_state/test_noise05.hdf5"], "miss04": ["data/lift_state/test_miss04.hdf5"], "bc_noise03_s100": ["data/lift_roll/n40_noise03_s100.hdf5", "data/lift_roll/n10_noise03_s100.hdf5"]}
S, A = load(train_paths); tests = {k: load(v) for k, v in test.items()}
for hist in (False, True):
    X, Y = features(S, A, hist)
    mu, sd = X.mean(0), X.std(0) + 1e-6; ysd = Y.std(0) + 1e-6
    Xt, Yt = torch.tensor((X - mu) / sd), torch.tensor(Y / ysd)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(), torch.nn.Linear(256, 3))
    opt = torch.optim.AdamW(net.parameters(), 1e-3); t0 = time.time()
    for step in range(4000):
        idx = torch.randint(0, len(Xt), (1024,))
        loss = ((net(Xt[idx]) - Yt[idx]) ** 2).mean(); opt.zero_grad(); loss.backward(); opt.step()
        if step == 3000:
            for g in opt.param_groups: g["lr"] = 3e-4
    out = [f"hist={hist} train n={len(X)} ({time.time()-t0:.0f}s)"]
    with torch.no_grad():
        for k, (s, a) in tests.items():
            x, y = features(s, a, hist)
            p = net(torch.tensor((x - mu) / sd)).numpy() * ysd
            err = np.linalg.norm(p - y, axis=1) * 1000
            out.append(f"{k}: {err.mean():.2f} mm (step {np.linalg.norm(y, axis=1).mean()*1000:.1f})")
    print(" | ".join(out), flush=True)
