"""Seed 000's DL tensors: (time, channel, strike) windows centred on each step's ATM strike,
normalized per channel kind, with a mask of real values."""

from __future__ import annotations

import numpy as np

from mandi.features import build_dl_tensor
from mandi.features.chain import feature_matrix_config
from mandi.options.chain import CE_LTP, CHANNEL_NAMES, PE_OI, UNDERLYING, ChainMatrix

from .synth import DAYS, chains, market


def test_tensor_is_atm_centred_normalized_and_masked():
    nifty, _ = market(seed=1, per_day=12, days=DAYS[:1])
    snaps = [s for s in chains(nifty, every_s=180, strikes_each_side=8) if s.expiry.day == 14]
    m = ChainMatrix(feature_matrix_config())
    for s in snaps:
        m.process_option_chain("NIFTY", s, notify=False)
    hist = m.history("NIFTY", snaps[0].expiry)
    t = build_dl_tensor(hist, window=16, strikes_each_side=4)
    assert t.values.shape == (16, 23, 9) and t.values.dtype == np.float32
    assert t.channels == CHANNEL_NAMES and t.offsets.tolist() == list(range(-4, 5))
    assert not t.mask[:4].any()  # 12 snapshots in a 16-step window: zero-padded at the start
    last = snaps[-1]
    spot = last.underlying_price / 100
    atm = min(last.rows, key=lambda r: abs(r.strike / 100 - spot))
    np.testing.assert_allclose(t.values[-1, CE_LTP, 4], atm.call.ltp / 100 / spot, rtol=1e-6)
    np.testing.assert_allclose(t.values[-1, PE_OI, 4], np.log1p(atm.put.oi / 65), rtol=1e-6)
    assert abs(t.values[-1, UNDERLYING, 4]) < 1e-6  # log(spot / last spot)
    assert t.mask[4:, : UNDERLYING + 1].all()  # every quote and size of every step is there
