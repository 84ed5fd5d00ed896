import os, time
from library_fakes import FakeAnalyser
class CrashHang(FakeAnalyser):
    def predict_features(self, feats, batch_size=None):
        if len(feats) == 5:
            os._exit(3)
        if len(feats) == 7:
            time.sleep(600)
        return super().predict_features(feats, batch_size)
